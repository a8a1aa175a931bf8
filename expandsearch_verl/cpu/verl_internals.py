"""Every place the CPU backend depends on verl 0.9.1 beyond its public extension points, in one table.

verl's public ways in (the platform registry, `RolloutReplicaRegistry`, `EngineRegistry.register`,
`BaseRollout`, hydra overrides) carry most of the backend. The rest leans on verl internals: a
module-level dict, the exact backend string verl builds for its process group, defaults that only
hold on a GPU. Each is a `Reach` below, with the verl file:line and the text expected there;
`check_verl()` reads the installed verl and fails loudly, naming the reach, when any of them moved
(tests/expandsearch_verl/cpu/test_verl_internals.py runs it, and so does every process that
activates the backend). Upgrading verl: re-read each reach, fix it, update the line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VERL_VERSION = "0.9.1"


@dataclass(frozen=True)
class Reach:
    file: str  # relative to the verl package
    line: int
    text: str  # what that line must still contain
    why: str  # what breaks on a CPU, and what the backend does about it


REACHES: dict[str, Reach] = {
    "rollout_adapter_table": Reach(
        "workers/rollout/base.py",
        89,
        "_ROLLOUT_REGISTRY = {",
        "the in-worker rollout table has no register function and get_rollout_class asserts the name "
        "is in it: register_rollout_adapter adds (name, 'async') to the dict",
    ),
    "rollout_adapter_lookup": Reach(
        "workers/rollout/base.py",
        106,
        "assert (rollout_name, mode) in _ROLLOUT_REGISTRY",
        "the lookup register_rollout_adapter feeds",
    ),
    "fsdp_engine_devices": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        1143,
        'model_type="language_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"]',
        "the FSDP actor engine is registered for cuda/npu only: register_cpu_engines registers the "
        "same class for device 'cpu' through EngineRegistry.register",
    ),
    "fsdp_value_engine_devices": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        1594,
        'model_type="value_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"]',
        "the same for the critic (PPO's value model)",
    ),
    "process_group_backend": Reach(
        "utils/distributed.py",
        89,
        'f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"',
        "on a CPU this is 'cpu:gloo,cpu:gloo', which torch refuses (duplicate device type): "
        "join_worker_process_group starts a plain gloo group first",
    ),
    "process_group_skip": Reach(
        "utils/distributed.py",
        90,
        "if not torch.distributed.is_initialized():",
        "verl skips its own process-group start when one exists",
    ),
    "sft_process_group": Reach(
        "utils/distributed.py",
        63,
        'backend = f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"',
        "verl's SFT trainer (trainer/sft_trainer.py:455, run_sft) starts its process group with this "
        "backend unconditionally; on a CPU torch refuses it: expandsearch_verl.cpu.sft starts a plain "
        "gloo group and then runs verl's SFTTrainer itself",
    ),
    "sft_trainer_entry": Reach(
        "trainer/sft_trainer.py",
        455,
        "initialize_global_process_group()",
        "the call expandsearch_verl.cpu.sft stands in for (the rest of run_sft: SFTTrainer(config).fit())",
    ),
    "worker_group_env": Reach(
        "single_controller/ray/base.py",
        635,
        '"WG_PREFIX": self.name_prefix,',
        "verl's worker processes carry WG_PREFIX, RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT: "
        "how join_worker_process_group tells a worker from any other Ray process",
    ),
    "bundle_device_resource": Reach(
        "single_controller/ray/base.py",
        148,
        "bundle[device_name] = 1",
        "placement bundles ask for one device each: the platform names 'GPU' and "
        "ray_kwargs.ray_init.num_gpus declares logical ones",
    ),
    "resource_check_gpus": Reach(
        "single_controller/ray/base.py",
        230,
        'node_info.get("GPU", 0) if "GPU" in node_info else node_info.get("NPU", 0)',
        "the resource check counts GPU/NPU only (same fix)",
    ),
    "flash_attention_default": Reach(
        "workers/config/model.py",
        185,
        'self.override_config.get("attn_implementation", "flash_attention_2")',
        "flash-attn is GPU-only: override_config.attn_implementation=sdpa, use_remove_padding=false "
        "(packed sequences need flash-attn's varlen kernel)",
    ),
    "fsdp2_reference_offload": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        462,
        "offload_policy = CPUOffloadPolicy(pin_memory=True)",
        "a forward-only (reference) engine pins memory, which needs an accelerator: the reference "
        "becomes a trainable engine at lr 0 (ref.fsdp_config.forward_only=false plus an optimizer)",
    ),
    "fsdp1_sync_states": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        444,
        "sync_module_states=True,",
        "FSDP1 broadcasts from an accelerator: strategy=fsdp2",
    ),
    "device_id_as_target": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        1028,
        "device = get_device_id()",
        "verl moves tensors with .to(get_device_id()): the platform's current_device() is 'cpu', not 0",
    ),
    "flops_device_name": Reach(
        "utils/flops_counter.py",
        80,
        "device_name = get_torch_device().get_device_name()",
        "the flops counter asks the device module for a name: the stand-in answers 'CPU'",
    ),
}


class VerlChanged(RuntimeError):
    """The installed verl no longer matches what the CPU backend was written against."""


def verl_root() -> Path:
    import verl

    return Path(verl.__file__).parent


def check_verl() -> None:
    """Raise `VerlChanged` naming every reach whose verl line moved or changed (and a version change)."""
    import verl

    problems = []
    if verl.__version__ != VERL_VERSION:
        problems.append(f"verl is {verl.__version__}; the CPU backend was written against {VERL_VERSION}")
    root = verl_root()
    for name, reach in REACHES.items():
        path = root / reach.file
        lines = path.read_text().splitlines() if path.exists() else []
        found = lines[reach.line - 1] if len(lines) >= reach.line else ""
        if reach.text not in found:
            problems.append(
                f"{name}: verl/{reach.file}:{reach.line} no longer reads {reach.text!r} ({reach.why})"
            )
    if problems:
        raise VerlChanged(
            "the CPU backend depends on verl internals that changed:\n  " + "\n  ".join(problems)
        )


def register_rollout_adapter(rollout_name: str, adapter_fqn: str) -> None:
    """Reaches `rollout_adapter_table`: what `get_rollout_class(rollout_name, 'async')` builds in a worker."""
    from verl.workers.rollout import base

    base._ROLLOUT_REGISTRY[(rollout_name, "async")] = adapter_fqn


def register_cpu_engines() -> None:
    """Reaches `fsdp_engine_devices` / `fsdp_value_engine_devices`: verl's FSDP engines, for device cpu.

    Once per process (`EngineRegistry.register` refuses a second registration of a key)."""
    from verl.workers.engine import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, engine in (
        ("language_model", FSDPEngineWithLMHead),
        ("value_model", FSDPEngineWithValueHead),
    ):
        EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device="cpu")(engine)


WORKER_ENV = ("WG_PREFIX", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def is_verl_worker() -> bool:
    """Reaches `worker_group_env`: this process is one of verl's worker-group actors."""
    return all(os.environ.get(key) for key in WORKER_ENV)


def join_worker_process_group() -> None:
    """Reaches `process_group_backend` / `process_group_skip`: start gloo before verl tries 'cpu:gloo,cpu:gloo'."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend="gloo",
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            init_method=os.environ.get("DIST_INIT_METHOD"),
        )
