"""A small, valid run for the doctor's tests to break one piece at a time: the tiny chat model, the
sample parquet files, an agent-loop YAML written through the loop's own config class, and 2 GPUs'
worth of batch sizes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


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
def small_run(chat_model_dir: Path, prepared_data_dir: Path, write_agent_loop_yaml) -> Callable[..., list[str]]:
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
