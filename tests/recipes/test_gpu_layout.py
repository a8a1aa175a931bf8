"""The recipes' GPU layout, rollout engine, validation batches and token budgets, at the real model's
size (Qwen2.5-3B's config) on an 8 x 80 GB node: composed with verl's real config, then the doctor's
GPU memory plan and logits checks on the launch line the recipe prints."""

from __future__ import annotations

import pytest

from expandsearch_verl.doctor import Preflight
from expandsearch_verl.doctor.context import GpuLayout
from expandsearch_verl.doctor.memory import check_gpu_memory, check_logits
from expandsearch_verl.doctor.report import Status
from expandsearch_verl.doctor.runtime import check_rollout_engine
from expandsearch_verl.doctor.verl_config import check_batches, check_config

PPO = "train_expandsearch_ppo_qwen2.5-3b.sh"
SEVEN = [0, 1, 2, 3, 4, 5, 6]


def doctor_memory(argv: list[str], layout: GpuLayout) -> list:
    """The gpu-memory and logits checks on an 80 GB card, whatever this machine has."""
    ctx = Preflight(argv[3:], layout=layout)
    assert check_config(ctx)[0].status is Status.PASS
    return check_gpu_memory(ctx) + check_logits(ctx)


@pytest.fixture
def real_size(recipe_env, qwen3b_config_dir):
    """`real_size(**variables)`: the environment of a recipe run on Qwen2.5-3B's config."""
    return lambda **variables: recipe_env(MODEL_PATH=str(qwen3b_config_dir), **variables)


@pytest.mark.parametrize(
    ("recipe", "gpus", "prompts"),
    [
        (PPO, 7, 504),
        ("train_expandsearch_grpo_qwen2.5-3b.sh", 7, 504),
        ("eval_expandsearch.sh", 7, 504),
        ("train_searchr1_baseline_qwen2.5-3b.sh", 8, 512),  # no squeezer: every GPU trains
    ],
)
def test_every_recipe_fits_an_8_x_80_gb_node_as_written(recipe, gpus, prompts, real_size, dry_run):
    env = real_size()
    if recipe.startswith("train_searchr1"):
        del env["DATA_DIR"]
    argv = dry_run(recipe, env)
    trained = list(range(gpus))
    squeezer = [] if gpus == 8 else [7]
    results = doctor_memory(argv, GpuLayout(trained, SEVEN, squeezer, card_gib=79.2))
    assert [r.status for r in results] == [Status.PASS, Status.PASS], results
    ctx = Preflight(argv[3:])
    check_config(ctx)
    assert ctx.select("trainer.n_gpus_per_node") == gpus and ctx.select("data.train_batch_size") == prompts
    assert [r.status for r in check_batches(ctx)] == [Status.PASS]


def test_the_old_layout_fails_and_the_fix_is_the_squeezer_on_its_own_gpu(real_size, dry_run):
    """README's former steps 3-7: the squeezer at 0.90 on GPU 0, the index and the trainer on all eight."""
    eight = list(range(8))
    argv = dry_run(PPO, real_size(TRAIN_GPUS="0,1,2,3,4,5,6,7"))
    plan, logits = doctor_memory(argv, GpuLayout(eight, eight, [0], card_gib=79.2))
    assert plan.status is Status.FAIL and "GPU 0: rollout 47.5 + FSDP 11.5" in plan.detail
    assert "squeezer 71.8" in plan.detail and "of 79.2 GiB" in plan.detail
    assert plan.fix.startswith("TRAIN_GPUS=0,1,2,3,4,5,6 RETRIEVER_GPUS=0,1,2,3,4,5,6 SQUEEZER_GPUS=7 ")
    assert logits.status is Status.SKIP and "see gpu-memory" in logits.detail


def test_fixed_micro_batches_would_hold_hundreds_of_gib_of_logits(real_size, dry_run):
    argv = dry_run(PPO, real_size(USE_DYNAMIC_BSZ="False"))
    plan, *logits = doctor_memory(argv, GpuLayout(SEVEN, SEVEN, [7], card_gib=79.2))
    assert plan.status is Status.PASS
    assert [r.status for r in logits] == [Status.FAIL, Status.FAIL]
    assert logits[0].detail.startswith("old-log-prob: 454,144 tokens x 151,936 vocabulary x 8 B = 514.1 GiB")
    assert "log_prob_use_dynamic_bsz=True" in logits[0].fix and "USE_DYNAMIC_BSZ=True" in logits[0].fix


def test_train_gpus_sets_the_gpu_count_and_the_visible_devices(real_size, dry_run, run_recipe):
    argv = dry_run(PPO, real_size(TRAIN_GPUS="0,1,2,3"))
    ctx = Preflight(argv[3:])
    check_config(ctx)
    assert ctx.select("trainer.n_gpus_per_node") == 4
    assert (
        ctx.select("data.train_batch_size"),
        ctx.select("actor_rollout_ref.actor.ppo_mini_batch_size"),
    ) == (
        512,
        256,
    )
    refused = run_recipe(PPO, real_size(TRAIN_GPUS="0,1,2,3", GPUS_PER_NODE="8"))
    assert refused.returncode == 2
    assert "GPUS_PER_NODE=8 but TRAIN_GPUS=0,1,2,3 lists 4 GPUs" in refused.stderr


def test_sglang_gets_its_tokenizer_and_the_doctor_refuses_it_without(real_size, dry_run, run_recipe):
    argv = dry_run(PPO, real_size(ROLLOUT="sglang"))
    assert "actor_rollout_ref.rollout.name=sglang" in argv
    assert "actor_rollout_ref.rollout.skip_tokenizer_init=False" in argv
    ctx = Preflight([*argv[3:], "actor_rollout_ref.rollout.skip_tokenizer_init=True"])
    check_config(ctx)
    ctx.expandsearch_loops = {"expandsearch_agent": object()}  # the loop that sends stop strings
    (result,) = check_rollout_engine(ctx)
    assert result.status is Status.FAIL and "</search>" in result.detail
    assert result.fix.startswith("actor_rollout_ref.rollout.skip_tokenizer_init=False")
    refused = run_recipe(PPO, real_size(ROLLOUT="trtllm"))
    assert refused.returncode == 2 and "ROLLOUT=trtllm: expected vllm or sglang" in refused.stderr


def test_training_validates_a_sample_in_batches_and_eval_every_question(real_size, dry_run):
    train = Preflight(dry_run(PPO, real_size())[3:])
    check_config(train)
    assert (train.select("data.val_max_samples"), train.select("data.val_batch_size")) == (5120, 504)
    assert train.select("data.seed") == 42
    evaluation = Preflight(dry_run("eval_expandsearch.sh", real_size())[3:])
    check_config(evaluation)
    assert (evaluation.select("data.val_max_samples"), evaluation.select("data.val_batch_size")) == (-1, 504)


def test_multinode_trains_on_every_gpu_of_each_node(recipe_env, dry_run):
    job = dry_run("multinode/submit.sh", recipe_env(RETRIEVER_URLS="http://10.0.0.9:8000"))
    forwarded = dict(item.split("=", 1) for item in job[job.index("env") + 1 : job.index("bash")])
    assert forwarded["TRAIN_GPUS"] == "0,1,2,3,4,5,6,7" and forwarded["GPUS_PER_NODE"] == "8"
    assert forwarded["SQUEEZER_GPUS"] == "" and forwarded["RETRIEVER_GPUS"] == ""
