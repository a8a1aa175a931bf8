"""Checks on this node's runtime: what a Ray worker started here would import, the verl lines the
package reaches into, the rollout engine, the trainer flavour's extra dependency, and the GPUs a
one-node run asks for.

Ray workers do not inherit this shell's PYTHONPATH or working directory when Ray was started by
`ray start`, so the plugin must be an installed package; the check imports it from a fresh
interpreter without either, and compares the file it finds with the one this process uses (a stale
install of another checkout is the usual surprise).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from expandsearch_verl.cpu.overrides import ROLLOUTS as CPU_ROLLOUTS
from expandsearch_verl.doctor.context import CPU_RUN, Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed, skipped, warned

ENGINE_MODULES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt_llm"}
GPU_EXTRA_FIX = 'pip install -e ".[gpu]" on every node (verl[verl-core,vllm]==0.9.1 and flash-attn)'
PROBE = "import expandsearch_verl.agent_loop, expandsearch_verl.reward, expandsearch_verl; print(expandsearch_verl.__file__)"


def check_plugin_install(ctx: Preflight) -> list[CheckResult]:
    name = "plugin"
    import expandsearch_verl

    ours = Path(expandsearch_verl.__file__).resolve().parent
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as neutral:
        probe = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=neutral, env=env, capture_output=True, text=True, timeout=300
        )
    if probe.returncode != 0:
        error = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return [
            failed(
                name,
                f"a fresh {Path(sys.executable).name} (no PYTHONPATH, another directory) cannot import the plugin: {error}",
                "pip install -e . in this environment on every node, so Ray workers can import expandsearch_verl",
            )
        ]
    theirs = Path(probe.stdout.strip()).resolve().parent
    if theirs != ours:
        return [
            warned(
                name,
                f"Ray workers would import expandsearch_verl from {theirs}, this process uses {ours}",
                f"pip install -e {ours.parent} so the workers run this checkout",
            )
        ]
    return [
        passed(name, f"installed: a fresh interpreter imports the agent loop and the reward from {theirs}")
    ]


def check_verl_internals(ctx: Preflight) -> list[CheckResult]:
    """Every reach into verl's internals (expandsearch_verl.verl_internals), whichever part uses it."""
    name = "verl"
    from expandsearch_verl.verl_internals import REACHES, USERS, VERL_VERSION, changes, reaches_of

    problems = changes()
    if problems:
        fix = (
            f"pip install -e . (it pins verl=={VERL_VERSION}); to move to another verl, "
            "docs/development.md#upgrading-verl"
        )
        return [failed(name, problem, fix) for problem in problems]
    per_user = ", ".join(f"{user} {len(reaches_of(user))}" for user in USERS)
    return [
        passed(name, f"verl {VERL_VERSION}: all {len(REACHES)} internal lines relied on hold ({per_user})")
    ]


def check_rollout_engine(ctx: Preflight) -> list[CheckResult]:
    name = "engine"
    engine = ctx.select("actor_rollout_ref.rollout.name")
    if ctx.on_cpu:
        if engine in CPU_ROLLOUTS:
            return [passed(name, f"{engine}: the CPU backend's rollout (trainer.device=cpu)")]
        return [
            failed(
                name,
                f"actor_rollout_ref.rollout.name={engine} with trainer.device=cpu: the CPU backend serves "
                f"{' or '.join(CPU_ROLLOUTS)} only",
                "actor_rollout_ref.rollout.name=hf (DEVICE=cpu on a recipe sets it)",
            )
        ]
    if (
        engine == "sglang"
        and ctx.expandsearch_loops
        and ctx.select("actor_rollout_ref.rollout.skip_tokenizer_init")
    ):
        return [
            failed(
                name,
                "SGLang without a tokenizer (rollout.skip_tokenizer_init=True, verl's default) cannot apply the "
                "agent loop's stop strings </search> and </answer>: it crashes or rejects every request",
                "actor_rollout_ref.rollout.skip_tokenizer_init=False (the recipes' ROLLOUT=sglang sets it)",
            )
        ]
    module = ENGINE_MODULES.get(str(engine))
    if module is None:
        return [
            warned(
                name,
                f"actor_rollout_ref.rollout.name={engine}: not a GPU engine this project supports",
                "actor_rollout_ref.rollout.name=vllm",
            )
        ]
    if importlib.util.find_spec(module) is None:
        return [
            failed(
                name, f"rollout.name={engine} but the '{module}' package is not installed here", GPU_EXTRA_FIX
            )
        ]
    return [passed(name, f"{engine} is installed")]


def check_trainer(ctx: Preflight) -> list[CheckResult]:
    name = "trainer"
    if not ctx.select("trainer.use_v1", True):
        return [passed(name, "legacy RayPPOTrainer (trainer.use_v1=false): no TransferQueue needed")]
    if importlib.util.find_spec("transfer_queue") is None:
        return [
            failed(
                name,
                "trainer.use_v1=true (verl 0.9.1's default) imports transfer_queue, which is not installed",
                f"{GPU_EXTRA_FIX}; or trainer.use_v1=false (USE_V1=0), the recipes' default",
            )
        ]
    return [passed(name, "V1 trainer (trainer.use_v1=true) with TransferQueue installed")]


def check_gpus(ctx: Preflight) -> list[CheckResult]:
    name = "gpus"
    if ctx.on_cpu:
        return [skipped(name, CPU_RUN)]
    nodes, per_node = ctx.select("trainer.nnodes", 1), ctx.select("trainer.n_gpus_per_node", 1)
    if nodes > 1:
        return [
            skipped(name, f"{nodes} nodes: counted on the Ray cluster by the ray-nodes check (--ray-address)")
        ]
    import torch

    visible = torch.cuda.device_count()
    if visible < per_node:
        fix = (
            f"trainer.n_gpus_per_node={visible} (GPUS_PER_NODE) if that is all you have, or check CUDA_VISIBLE_DEVICES"
            if visible
            else "run the doctor on the GPU node the job runs on (--skip gpus on a login node)"
        )
        return [
            failed(
                name,
                f"trainer.n_gpus_per_node={per_node}, but {visible} CUDA device(s) are visible here",
                fix,
            )
        ]
    return [passed(name, f"{visible} CUDA device(s) visible, {per_node} used")]
