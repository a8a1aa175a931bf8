"""A small, valid run for the doctor's tests to break one piece at a time (`small_run`: the tiny chat
model, the sample parquet files, an agent-loop YAML written through the loop's own config class, 2
GPUs' worth of batch sizes), and `preflight`, which runs chosen checks on it in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from expandsearch_verl.doctor import CHECKS, CheckResult, Preflight, run_check
from expandsearch_verl.doctor.verl_config import check_config


@pytest.fixture
def write_agent_loop_yaml(tmp_path: Path) -> Callable[..., Path]:
    """`write_agent_loop_yaml(**knobs)`: the shipped YAML with `knobs` set, validated, at an absolute path."""
    from expandsearch_verl.config import AgentLoopConfig

    def write(name: str = "agent_loops.yaml", **knobs) -> Path:
        config = AgentLoopConfig().with_overrides([f"{key}={value}" for key, value in knobs.items()])
        path = tmp_path / name
        path.write_text(config.to_yaml())
        return path

    return write


@pytest.fixture
def small_run(
    chat_model_dir: Path, prepared_data_dir: Path, write_agent_loop_yaml
) -> Callable[..., list[str]]:
    """`small_run(*extra, **knobs)`: overrides of a run every config check accepts; `extra` go last (they win)."""

    def overrides(*extra: str, **knobs) -> list[str]:
        yaml_path = write_agent_loop_yaml(**knobs)
        return [
            "actor_rollout_ref.rollout.name=vllm",
            f"actor_rollout_ref.model.path={chat_model_dir}",
            f"critic.model.path={chat_model_dir}",
            f"data.train_files={prepared_data_dir / 'train.parquet'}",
            f"data.val_files={prepared_data_dir / 'test.parquet'}",
            "data.train_batch_size=16",  # 2 GPUs: 8 rows per GPU per step
            "data.val_batch_size=16",  # validation in batches of a step, not the whole file at once
            "data.max_prompt_length=1024",  # the tiny tokenizer spends ~540 tokens on a sample prompt
            "data.max_response_length=2048",  # more than 3 observations of 512 tokens
            "actor_rollout_ref.actor.ppo_mini_batch_size=8",  # 4 rows per GPU per update
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
            "critic.ppo_micro_batch_size_per_gpu=4",
            "critic.forward_micro_batch_size_per_gpu=8",
            "trainer.n_gpus_per_node=2",
            "trainer.use_v1=false",
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={yaml_path}",
            "reward.custom_reward_function.path=pkg://expandsearch_verl.reward",
            *extra,
        ]

    return overrides


# What a check reads from the checks before it (besides the composed config).
NEEDS = {
    "train-data": ("agent-loop", "model"),
    "val-data": ("agent-loop", "model"),
    "retriever": ("agent-loop",),
    "squeezer": ("agent-loop",),
    "ray-nodes": ("agent-loop",),
}


@pytest.fixture
def preflight() -> Callable[..., tuple[Preflight, list[CheckResult]]]:
    """`preflight(overrides, *names, **options)`: compose, run what the named checks need, then the named
    checks, in the doctor's order; returns the context and the named checks' results."""

    def run(overrides: list[str], *names: str, **options) -> tuple[Preflight, list[CheckResult]]:
        ctx = Preflight(list(overrides), **options)
        composed = check_config(ctx)
        results = composed if "config" in names else []
        wanted = {need for name in names for need in NEEDS.get(name, ())} | set(names)
        for name, check in CHECKS[1:]:
            if name in wanted:
                found = run_check(ctx, name, check)
                results += found if name in names else []
        return ctx, results

    return run
