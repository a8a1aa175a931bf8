"""config / validate / batches / lengths: verl's real hydra config and validate_config, broken on purpose."""

from __future__ import annotations

import pytest

from expandsearch_verl.doctor.report import Status

FULL_SCALE = [  # the paper's batch sizes on 1 node x 8 GPUs
    "trainer.n_gpus_per_node=8",
    "data.train_batch_size=512",
    "actor_rollout_ref.actor.ppo_mini_batch_size=256",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
    "critic.ppo_micro_batch_size_per_gpu=32",
    "critic.forward_micro_batch_size_per_gpu=64",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=64",
]


def test_a_valid_run_passes_every_config_check(small_run, preflight):
    _, results = preflight(small_run(), "config", "validate", "batches", "lengths")
    assert [r.status for r in results] == [Status.PASS] * 4, results
    assert "critic on" in results[1].detail and "legacy RayPPOTrainer" in results[1].detail
    assert results[2].detail.startswith("16 prompts x 1 = 16 trajectories per step, 8 per GPU")


def test_an_unknown_key_fails_composition_and_says_about_plus(small_run, preflight):
    ctx, results = preflight(
        small_run("actor_rollout_ref.rollout.no_such_knob=1"), "config", "validate", "batches"
    )
    assert results[0].status is Status.FAIL and "no_such_knob" in results[0].detail
    assert "'+'" in results[0].fix
    assert ctx.config is None and [r.status for r in results[1:]] == [Status.SKIP, Status.SKIP]


def test_a_bad_interpolation_fails(small_run, preflight):
    _, results = preflight(small_run("trainer.experiment_name=${no.such.key}"), "config")
    assert results[0].status is Status.FAIL and "interpolation" in results[0].detail


def test_validate_config_refusal_is_reported_with_verls_message(small_run, preflight):
    _, results = preflight(small_run("actor_rollout_ref.actor.ppo_mini_batch_size=32"), "validate", "batches")
    assert results[0].status is Status.FAIL
    assert "train_batch_size (16) must be >= actor.ppo_mini_batch_size (32)" in results[0].detail
    assert (
        results[1].status is Status.FAIL
        and results[1].fix == "actor_rollout_ref.actor.ppo_mini_batch_size=16"
    )


@pytest.mark.parametrize(
    ("extra", "detail", "fix"),
    [
        (
            ["data.train_batch_size=15"],
            "15 trajectories do not split over 2 GPUs",
            "data.train_batch_size=16",
        ),
        (
            ["actor_rollout_ref.actor.ppo_mini_batch_size=6"],
            "not a multiple of actor_rollout_ref.actor.ppo_mini_batch_size=6",
            "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        ),
        (
            ["actor_rollout_ref.actor.ppo_mini_batch_size=1"],
            "1 trajectories per update do not split over 2 GPUs",
            "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        ),
        (
            ["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3"],
            "4 rows per GPU in one update",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        ),
        (
            ["actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16"],
            "8 rows per GPU in the old-log-prob pass",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        ),
        (
            ["critic.forward_micro_batch_size_per_gpu=3"],
            "8 rows per GPU in the value pass",
            "critic.forward_micro_batch_size_per_gpu=2",
        ),
        (
            ["critic.ppo_micro_batch_size_per_gpu=8"],
            "4 rows per GPU in one update",
            "critic.ppo_micro_batch_size_per_gpu=4",
        ),
        (
            [
                "algorithm.adv_estimator=grpo",
                "actor_rollout_ref.rollout.n=5",
                "actor_rollout_ref.actor.use_kl_loss=True",
                "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16",
            ],
            "40 rows per GPU in the reference pass",
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=10",
        ),
        (
            [
                *FULL_SCALE,
                "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=128",
            ],  # ferret's value on verl 0.9.1
            "64 rows per GPU in the old-log-prob pass are not divisible by",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=64",
        ),
        (
            [
                *FULL_SCALE,
                "actor_rollout_ref.actor.use_dynamic_bsz=True",
                "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=False",
            ],
            "use_dynamic_bsz and actor_rollout_ref.rollout.log_prob_use_dynamic_bsz differ",
            "set both to the same value",
        ),
    ],
)
def test_batch_arithmetic_verl_asserts_only_on_gpus(small_run, preflight, extra, detail, fix):
    _, results = preflight(small_run(*extra), "batches")
    assert [r.status for r in results] == [Status.FAIL], results
    assert detail in results[0].detail and results[0].fix == fix


def test_the_papers_batches_pass_on_8_gpus(small_run, preflight):
    _, results = preflight(small_run(*FULL_SCALE), "validate", "batches")
    assert [r.status for r in results] == [Status.PASS, Status.PASS], results
    assert "512 trajectories per step, 64 per GPU; 2 actor update(s) of 32 per GPU" in results[1].detail


def test_max_model_len_must_hold_prompt_and_response(small_run, preflight):
    _, results = preflight(small_run("actor_rollout_ref.rollout.max_model_len=2000"), "lengths")
    assert (
        results[0].status is Status.FAIL and results[0].fix == "actor_rollout_ref.rollout.max_model_len=3072"
    )
