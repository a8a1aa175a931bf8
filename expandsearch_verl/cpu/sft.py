"""verl's own SFT trainer on a CPU: `python -m expandsearch_verl.cpu.sft [hydra overrides]`.

verl 0.9.1's `python -m verl.trainer.sft_trainer` cannot start on a CPU: its `run_sft` calls
`initialize_global_process_group`, which asks torch for the backend 'cpu:gloo,cpu:gloo' without
checking for an existing group, and torch refuses a device type named twice (the reaches
`sft_trainer_entry`, `sft_process_group` of `expandsearch_verl.verl_internals`). This entry point is `run_sft` with that one call replaced:
it registers the CPU platform and verl's FSDP engines for device 'cpu' (as the RL backend does in
its workers), starts a plain one-rank gloo group, then runs verl's `SFTTrainer` from verl's own
config (`sft_trainer_engine.yaml`) and the user's overrides. No torchrun: one rank, this process.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import hydra

from expandsearch_verl.cpu.overrides import ENV

# verl's config folder, found without importing verl (its import reads ENV, set by `run`)
CONFIG_DIR = str(Path(importlib.util.find_spec("verl").origin).parent / "trainer" / "config")

# What the CPU needs, as in the RL overrides (overrides.OVERRIDES says why each is there).
OVERRIDES = (
    "trainer.device=cpu",
    "trainer.nnodes=1",
    "trainer.n_gpus_per_node=1",
    "data.pad_mode=no_padding",  # the engine's only layout; it pads itself when remove_padding is off
    "data.num_workers=0",
    "engine.strategy=fsdp2",
    "engine.use_torch_compile=false",
    "+engine.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
    "model.use_remove_padding=false",
    "+model.override_config.attn_implementation=sdpa",
)


def _one_rank_env() -> None:
    """The variables torchrun would set for a single rank on this machine."""
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])


@hydra.main(config_path=CONFIG_DIR, config_name="sft_trainer_engine", version_base=None)
def main(config) -> None:
    import torch.distributed as dist
    from verl.trainer.sft_trainer import SFTTrainer

    from expandsearch_verl.cpu import verl_hooks

    verl_hooks.register_cpu_engines()
    verl_hooks.join_worker_process_group()
    try:
        SFTTrainer(config=config).fit()
    finally:
        dist.destroy_process_group()


def run(argv: list[str]) -> None:
    """Run verl's SFT trainer with the CPU overrides, then `argv` (hydra overrides, later ones win)."""
    import sys

    _one_rank_env()
    sys.argv = [sys.argv[0], *OVERRIDES, *argv]
    main()


if __name__ == "__main__":
    import sys

    run(sys.argv[1:])
