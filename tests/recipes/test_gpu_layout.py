"""The recipes' GPU layout, rollout engine, validation batches and token budgets, at the real model's
size (Qwen2.5-3B's config) on an 8 x 80 GB node: composed with verl's real config, then the doctor's
GPU memory plan and logits checks on the launch line and the layout the recipe gives its doctor."""

from __future__ import annotations

import pytest

from expandsearch_verl.doctor import Preflight
from expandsearch_verl.doctor.context import GpuLayout
from expandsearch_verl.doctor.memory import check_gpu_memory, check_logits
from expandsearch_verl.doctor.report import Status
from expandsearch_verl.doctor.runtime import check_rollout_engine
from expandsearch_verl.doctor.verl_config import check_batches, check_config

PPO = "train_expandsearch_ppo_qwen2.5-3b.sh"


def ids(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def recipe_layout(launched) -> GpuLayout:
    """The layout the recipe gave its doctor (--train-gpus, --retriever-gpus, --squeezer-gpus), on an 80 GB card."""
    gpus = launched.doctor_gpus
    return GpuLayout(
        ids(gpus["--train-gpus"]), ids(gpus["--retriever-gpus"]), ids(gpus["--squeezer-gpus"]), card_gib=79.2
    )


def doctor_memory(overrides: list[str], layout: GpuLayout) -> list:
    """The gpu-memory and logits checks on an 80 GB card, whatever this machine has."""
    ctx = Preflight(overrides, layout=layout)
    assert check_config(ctx)[0].status is Status.PASS
    return check_gpu_memory(ctx) + check_logits(ctx)


def verl_overrides(launched) -> list[str]:
    """The hydra overrides the recipe launched verl's trainer with (after `-m verl.trainer.main_ppo`)."""
    assert launched.returncode == 0, launched.stderr
    assert launched.argv[:2] == ["-m", "verl.trainer.main_ppo"]
    return launched.argv[2:]


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
def test_every_recipe_fits_an_8_x_80_gb_node_as_written(recipe, gpus, prompts, real_size, launch):
    env = real_size()
    if recipe.startswith("train_searchr1"):
        del env["DATA_DIR"]
    launched = launch(recipe, env)
    overrides = verl_overrides(launched)
    layout = recipe_layout(launched)
    assert layout.train_gpus == layout.retriever_gpus == list(range(gpus))
    assert layout.squeezer_gpus == ([] if gpus == 8 else [7])
    results = doctor_memory(overrides, layout)
    assert [r.status for r in results] == [Status.PASS, Status.PASS], results
    ctx = Preflight(overrides)
    check_config(ctx)
    assert ctx.select("trainer.n_gpus_per_node") == gpus and ctx.select("data.train_batch_size") == prompts
    assert [r.status for r in check_batches(ctx)] == [Status.PASS]


def test_the_old_layout_fails_and_the_fix_is_the_squeezer_on_its_own_gpu(real_size, launch, run_recipe):
    """README's former steps 3-7: the squeezer at 0.90 on GPU 0, the index and the trainer on all eight.
    The recipes refuse it; the doctor, given it, fails it and names the recipes' layout."""
    refused = run_recipe(PPO, real_size(TRAIN_GPUS="0,1,2,3,4,5,6,7", SQUEEZER_GPUS="0"))
    assert (
        refused.returncode == 2
        and "TRAIN_GPUS=0,1,2,3,4,5,6,7 and SQUEEZER_GPUS=0 share GPU 0" in refused.stderr
    )
    eight = list(range(8))
    overrides = verl_overrides(launch(PPO, real_size(SQUEEZER_GPUS="")))  # 8 trainers, as then
    plan, logits = doctor_memory(overrides, GpuLayout(eight, eight, [0], card_gib=79.2))
    assert plan.status is Status.FAIL and "GPU 0: rollout 47.5 + FSDP 11.5" in plan.detail
    assert "squeezer 71.8" in plan.detail and "of 79.2 GiB" in plan.detail
    default = recipe_layout(launch(PPO, real_size()))
    assert plan.fix.startswith(
        f"TRAIN_GPUS={','.join(map(str, default.train_gpus))} RETRIEVER_GPUS={','.join(map(str, default.retriever_gpus))} "
        f"SQUEEZER_GPUS={','.join(map(str, default.squeezer_gpus))} "
    )
    assert logits.status is Status.SKIP and "see gpu-memory" in logits.detail


def test_fixed_micro_batches_would_hold_hundreds_of_gib_of_logits(real_size, launch):
    launched = launch(PPO, real_size(USE_DYNAMIC_BSZ="False"))
    plan, *logits = doctor_memory(verl_overrides(launched), recipe_layout(launched))
    assert plan.status is Status.PASS
    assert [r.status for r in logits] == [Status.FAIL, Status.FAIL]
    assert logits[0].detail.startswith("old-log-prob: 454,144 tokens x 151,936 vocabulary x 8 B = 514.1 GiB")
    assert "log_prob_use_dynamic_bsz=True" in logits[0].fix and "USE_DYNAMIC_BSZ=True" in logits[0].fix


def test_train_gpus_sets_the_gpu_count_and_the_visible_devices(real_size, launch, run_recipe):
    launched = launch(PPO, real_size(TRAIN_GPUS="0,1,2,3"))
    assert (
        launched.visible == launched.doctor_visible == "0,1,2,3"
    )  # verl's Ray and the doctor see these only
    assert launched.doctor_gpus == {
        "--train-gpus": "0,1,2,3",
        "--retriever-gpus": "0,1,2,3",
        "--squeezer-gpus": "7",
    }
    ctx = Preflight(verl_overrides(launched))
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
