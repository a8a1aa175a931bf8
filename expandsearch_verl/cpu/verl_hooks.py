"""The CPU backend's code that acts on verl internals: each function names the reaches it relies on.

The reaches (verl file:line, the text expected there, why) are in `expandsearch_verl.verl_internals`,
checked by `check_verl(CPU_BACKEND)` when the backend activates (cpu/plugin.py).
"""

from __future__ import annotations

import os


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
