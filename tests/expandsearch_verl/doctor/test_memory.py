"""gpu-memory / logits: the plan's arithmetic on Qwen2.5-3B's config, and the measured path on a GPU node
(`measure_gpus` is the one function that needs CUDA; a double stands in for it here)."""

from __future__ import annotations

import pytest

from expandsearch_verl.doctor import memory
from expandsearch_verl.doctor.context import GpuLayout
from expandsearch_verl.doctor.report import Status

SEVEN = [0, 1, 2, 3, 4, 5, 6]


@pytest.fixture
def real_run(small_run, qwen3b_config_dir):
    """The small run's overrides with the real model's size, 7 training GPUs and the recipes' token budgets."""
    return lambda *extra: small_run(
        f"actor_rollout_ref.model.path={qwen3b_config_dir}",
        "trainer.n_gpus_per_node=7",
        "data.train_batch_size=504",
        "actor_rollout_ref.actor.ppo_mini_batch_size=252",
        "actor_rollout_ref.actor.use_dynamic_bsz=True",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.6",
        *extra,
    )


def test_the_plan_counts_every_process_of_each_gpu(real_run, preflight):
    layout = GpuLayout(SEVEN, SEVEN, [7], card_gib=79.2)
    _, results = preflight(real_run(), "gpu-memory", "logits", layout=layout)
    assert [r.status for r in results] == [Status.PASS, Status.PASS], results
    # 3,085,938,688 parameters x 16 B x (actor + critic) / 7 GPUs = 13.1 GiB; 30.1 / 7 + 1.5 + 0.5 = 6.3 GiB
    assert results[0].detail == (
        "while the rollout runs, GPU 0: rollout 47.5 + FSDP 13.1 + trainer contexts 1.5 + index 6.3 "
        "+ encoder 0.3 = 68.8 of 79.2 GiB; GPU 7: squeezer 71.8"
    )
    assert "old-log-prob 16,384 tokens 18.5, update 16,384 tokens 13.9" in results[1].detail


def test_a_token_budget_under_one_trajectory_fails(real_run, preflight):
    _, results = preflight(
        real_run("actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=2048"),
        "logits",
        layout=GpuLayout(SEVEN, SEVEN, [7], card_gib=79.2),
    )
    assert results[0].status is Status.FAIL and "< prompt + response = 3072" in results[0].detail
    assert results[0].fix == "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=3072"


def test_on_a_gpu_node_other_processes_are_measured(real_run, preflight, monkeypatch):
    """A squeezer someone left on GPU 3 (70 GiB used there) fails the plan; the estimates are not used."""
    used = [0.6] * 7
    used[3] = 70.0
    monkeypatch.setattr(memory, "measure_gpus", lambda: [(79.2, gib) for gib in used])
    _, results = preflight(real_run(), "gpu-memory", layout=GpuLayout(SEVEN, SEVEN, [7]))
    assert results[0].status is Status.FAIL
    assert results[0].detail.startswith(
        "does not fit while the rollout runs, GPU 3: rollout 47.5 + FSDP 13.1"
    )
    assert "measured other processes 69.5" in results[0].detail
    assert results[0].fix.startswith("free GPU 3 (other processes hold 69.5 GiB there: nvidia-smi)")


def test_a_rollout_share_too_large_for_the_rest_gets_one_that_fits(real_run, preflight):
    _, results = preflight(
        real_run("actor_rollout_ref.rollout.gpu_memory_utilization=0.9"),
        "gpu-memory",
        layout=GpuLayout(SEVEN, SEVEN, [7], card_gib=79.2),
    )
    assert results[0].status is Status.FAIL  # 71.3 + 21.3 GiB
    assert results[0].fix == "actor_rollout_ref.rollout.gpu_memory_utilization=0.70 (docs/gpu-layout.md)"


def test_a_model_without_a_readable_config_is_skipped(small_run, preflight, tmp_path):
    _, results = preflight(small_run(f"actor_rollout_ref.model.path={tmp_path}/nowhere"), "gpu-memory")
    assert results[0].status is Status.SKIP
