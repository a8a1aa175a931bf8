"""DEVICE=cpu on the training recipes and recipes/train_tiny_cpu.sh: the launch commands compose and
validate against verl's real config, the CPU overrides sit between the recipe's and the user's, and
bad settings stop with the setting and the fix named."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_training_recipes import compose_and_validate

from expandsearch_verl.cpu.overrides import ENV, OVERRIDES
from expandsearch_verl.doctor import Preflight, Status, run_checks
from expandsearch_verl.doctor.context import CPU_RUN
from expandsearch_verl.doctor.report import passed, skipped

GRPO = "train_expandsearch_grpo_qwen2.5-3b.sh"


def split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`env K=V ... python3 -m verl.trainer.main_ppo ARGS` -> ({K: V}, ARGS)."""
    assert argv[0] == "env"
    start = argv.index("verl.trainer.main_ppo")
    assert argv[start - 2 : start] == ["python3", "-m"]
    return dict(a.split("=", 1) for a in argv[1 : start - 2]), argv[start + 1 :]


def test_device_cpu_adds_only_the_backends_overrides(recipe_env, dry_run):
    gpu = dry_run(GRPO, recipe_env(), "trainer.total_training_steps=7")
    env, cpu = split_env(dry_run(GRPO, recipe_env(DEVICE="cpu"), "trainer.total_training_steps=7"))
    assert env == ENV
    recipe_own = gpu[3:-1]
    assert cpu == [*recipe_own, *OVERRIDES, "trainer.total_training_steps=7"]  # the user's argument last
    config, _, use_reference = compose_and_validate(cpu)
    assert config.trainer.device == "cpu" and config.actor_rollout_ref.rollout.name == "hf"
    assert use_reference and config.actor_rollout_ref.ref.optim.lr == 0.0  # GRPO's KL, reference at lr 0
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6 and config.actor_rollout_ref.rollout.n == 5


def test_device_cpu_composes_for_ppo_with_a_critic(recipe_env, dry_run):
    _, cpu = split_env(dry_run("train_expandsearch_ppo_qwen2.5-3b.sh", recipe_env(DEVICE="cpu")))
    config, use_critic, _ = compose_and_validate(cpu)
    assert (
        use_critic and config.critic.strategy == "fsdp2" and config.critic.model.use_remove_padding is False
    )


@pytest.mark.parametrize(
    ("argument", "fix"),
    [
        ("actor_rollout_ref.rollout.name=vllm", "DEVICE=cpu uses hf"),
        ("actor_rollout_ref.rollout.name='vllm'", "DEVICE=cpu uses hf"),  # hydra unquotes it
        ('actor_rollout_ref.rollout.name="sglang"', "DEVICE=cpu uses hf"),
        ("+actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2", "uses sdpa"),
        ("actor_rollout_ref.model.use_remove_padding=True", "varlen"),
        ("trainer.n_gpus_per_node=8", "one rank"),
        ("actor_rollout_ref.actor.strategy=fsdp", "FSDP2"),
    ],
)
def test_a_gpu_only_argument_stops_with_the_fix(recipe_env, run_recipe, argument, fix):
    result = run_recipe(GRPO, recipe_env(DEVICE="cpu"), argument)
    assert result.returncode == 2 and result.stdout == ""
    assert argument in result.stderr and fix in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("USE_V1", "True", "the CPU backend runs the legacy trainer"),
        ("ROLLOUT", "sglang", "DEVICE=cpu uses hf"),
        ("ROLLOUT", "hf", "DEVICE=cpu uses hf"),  # the backend's overrides set it
        ("NNODES", "2", "DEVICE=cpu runs on this machine"),
    ],
)
def test_a_gpu_only_variable_is_refused(recipe_env, run_recipe, variable, value, why):
    result = run_recipe(GRPO, recipe_env(DEVICE="cpu", **{variable: value}))
    assert result.returncode == 2 and result.stdout == ""
    assert f"{variable}={value}: with DEVICE=cpu leave it out ({why})" in result.stderr


def test_an_unknown_device_is_refused(recipe_env, run_recipe):
    result = run_recipe(GRPO, recipe_env(DEVICE="tpu"))
    assert result.returncode == 2 and "DEVICE=tpu: must be gpu or cpu" in result.stderr


def test_tiny_recipe_is_the_grpo_recipe_at_laptop_sizes(recipe_env, dry_run, chat_model_dir, tmp_path):
    env, argv = split_env(
        dry_run("train_tiny_cpu.sh", recipe_env(STEPS="3", ROLLOUT="scripted"), "data.seed=5")
    )
    assert env == ENV and argv[-1] == "data.seed=5"
    config, _, use_reference = compose_and_validate(argv)
    assert use_reference and config.actor_rollout_ref.actor.use_kl_loss is True
    assert config.actor_rollout_ref.rollout.name == "scripted" and config.trainer.total_training_steps == 3
    assert config.actor_rollout_ref.model.path == str(chat_model_dir)
    assert config.trainer.default_local_dir == str(tmp_path / "run" / "checkpoints")
    assert config.data.val_files == str(tmp_path / "run" / "data" / "test.parquet")
    assert (
        config.trainer.save_freq == 3
        and config.trainer.test_freq == 3
        and config.trainer.resume_mode == "auto"
    )


def test_the_doctor_accepts_the_cpu_launch_line(recipe_env, dry_run, prepared_data_dir, tmp_path):
    """What a recipe's doctor sees before a DEVICE=cpu launch: the CPU rollout, and no GPU to plan for."""
    shutil.copytree(prepared_data_dir, tmp_path / "run" / "data")  # what the recipe's step 1 writes
    # the test model's tokenizer spends ~540 tokens on a sample prompt (SmolLM2's ~250)
    env = recipe_env(MAX_PROMPT_LENGTH="1024", MAX_RESPONSE_LENGTH="2048")
    _, argv = split_env(dry_run("train_tiny_cpu.sh", env))
    skip = frozenset({"plugin"})  # which checkout this venv's Ray workers import is not the recipe's business
    results = run_checks(Preflight(argv, skip_network=True), skip=skip)
    by_name = {result.check: result for result in results}
    assert by_name["engine"] == passed("engine", "hf: the CPU backend's rollout (trainer.device=cpu)")
    for name in ("gpu-memory", "logits", "gpus"):
        assert by_name[name] == skipped(name, CPU_RUN)
    assert [result for result in results if result.status in (Status.FAIL, Status.WARN)] == []


@pytest.mark.parametrize("rollout", ["vllm", "sglang", "'vllm'"])
def test_tiny_recipe_names_its_own_rollout_variable(recipe_env, run_recipe, rollout):
    result = run_recipe("train_tiny_cpu.sh", recipe_env(ROLLOUT=rollout))
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr
        == f"ROLLOUT={rollout}: needs a GPU; this recipe runs on the CPU: ROLLOUT=hf or scripted\n"
    )


def test_tiny_recipe_dry_run_writes_only_what_its_command_reads(recipe_env, dry_run, tmp_path):
    argv = dry_run("train_tiny_cpu.sh", recipe_env())
    written = tmp_path / "run" / "agent_loops.yaml"
    assert list((tmp_path / "run").iterdir()) == [written]  # no data, no retriever.log, no checkpoints
    assert f"actor_rollout_ref.rollout.agent.agent_loop_config_path={written}" in argv


def test_tiny_recipe_names_a_missing_model(recipe_env, run_recipe, tmp_path):
    result = run_recipe("train_tiny_cpu.sh", recipe_env(MODEL_PATH=str(tmp_path / "nowhere")))
    assert result.returncode == 2 and f"MODEL_PATH={tmp_path / 'nowhere'}" in result.stderr


def test_tiny_recipe_stops_when_the_retriever_never_comes_up(recipe_env, run_recipe, free_port, tmp_path):
    env = recipe_env(DRY_RUN="0", RETRIEVER_TIMEOUT="0", RETRIEVER_PORT=str(free_port))
    result = run_recipe("train_tiny_cpu.sh", env)
    assert result.returncode == 3, result.stderr
    assert "RETRIEVER_TIMEOUT=0s" in result.stderr and "retriever.log" in result.stderr
    assert (tmp_path / "run" / "data" / "train.parquet").is_file()


def test_tiny_recipe_stops_when_a_given_retriever_is_down(recipe_env, run_recipe, free_port):
    dead = f"http://127.0.0.1:{free_port}"
    urls = f"{dead}, http://127.0.0.1:1"  # the first replica that is down is named
    result = run_recipe(
        "train_tiny_cpu.sh", recipe_env(DRY_RUN="0", RETRIEVER_TIMEOUT="0", RETRIEVER_URLS=urls)
    )
    assert result.returncode == 3, result.stderr
    assert (
        f"RETRIEVER_URLS={urls}: {dead}/health did not answer 200 within RETRIEVER_TIMEOUT=0s"
        in result.stderr
    )
