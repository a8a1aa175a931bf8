"""A CPU platform for verl 0.9.1's platform registry, and the `torch.cuda` stand-in it hands out.

verl asks its platform for a device module (`get_torch_device()`) and calls the CUDA API on it:
`empty_cache`, `synchronize`, `manual_seed`, `get_rng_state`, memory statistics, streams. `torch.cpu`
has only some of them, so `DEVICE_MODULE` is `torch.cpu` plus CPU meanings for the rest (no-ops,
the CPU generator, zero or host-memory figures). Chosen with `VERL_PLATFORM=cpu`; never auto-detected.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import Any

import psutil
import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

PLATFORM_NAME = "cpu"


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _host_memory(*args: Any, **kwargs: Any) -> tuple[int, int]:
    memory = psutil.virtual_memory()
    return memory.available, memory.total


def _device_module() -> types.ModuleType:
    """`torch.cpu` plus the CUDA calls verl makes, with their CPU meaning."""
    module = types.ModuleType("expandsearch_verl.cpu.device")
    module.__dict__.update(
        {name: getattr(torch.cpu, name) for name in dir(torch.cpu) if not name.startswith("_")}
    )
    module.__dict__.update(
        is_available=lambda: True,
        device_count=lambda: 1,
        current_device=lambda: PLATFORM_NAME,
        set_device=_noop,
        synchronize=_noop,
        empty_cache=_noop,
        ipc_collect=_noop,
        reset_peak_memory_stats=_noop,
        set_per_process_memory_fraction=_noop,
        manual_seed=torch.manual_seed,
        manual_seed_all=torch.manual_seed,
        get_rng_state=torch.get_rng_state,
        set_rng_state=torch.set_rng_state,
        memory_allocated=_zero,
        memory_reserved=_zero,
        max_memory_allocated=_zero,
        max_memory_reserved=_zero,
        mem_get_info=_host_memory,
        get_device_name=lambda *args: "CPU",  # utils/flops_counter.py looks the name up in a GPU table
    )
    return module


DEVICE_MODULE = _device_module()


class CPUPlatform(PlatformBase):
    """verl's device abstraction on the host CPU: gloo collectives, no accelerator features.

    Ray sees logical GPUs (`ray_init.num_gpus`) because verl's placement groups and resource checks
    count only `GPU`/`NPU` (`verl_internals` reaches `bundle_device_resource`, `resource_check_gpus`);
    nothing ever runs on one.
    """

    @property
    def device_name(self) -> str:
        return PLATFORM_NAME

    @property
    def vendor_name(self) -> str:
        return PLATFORM_NAME

    @property
    def device_module(self) -> types.ModuleType:
        return DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return False  # only ever chosen by VERL_PLATFORM=cpu, never by auto-detection

    def current_device(self) -> str:  # type: ignore[override]  # verl does `tensor.to(current_device())`
        return PLATFORM_NAME

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for the logical GPUs

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def use_all_cores() -> None:
    """Ray starts actors with OMP_NUM_THREADS=1 (they reserve no CPU here); the trainer's phases take
    turns (generate, then log-probs, then update), so the one working at a time may use every core."""
    torch.set_num_threads(len(os.sched_getaffinity(0)))


def register_platform() -> None:
    """Make `VERL_PLATFORM=cpu` resolve to `CPUPlatform` (verl's public platform registry)."""
    if PlatformRegistry.get(PLATFORM_NAME) is not CPUPlatform:
        PlatformRegistry.register(PLATFORM_NAME)(CPUPlatform)
