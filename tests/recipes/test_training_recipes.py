"""The training and evaluation recipes: their dry-run launch commands composed with verl 0.9.1's real
hydra config and `validate_config` (the model path is the tiny local model), so a renamed verl key
breaks here, not on a cluster; plus the doctor's batch arithmetic at the recipes' real sizes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from expandsearch_verl.doctor import Preflight
from expandsearch_verl.doctor.report import Status
from expandsearch_verl.doctor.verl_config import check_batches, check_config
from expandsearch_verl.search_metrics import MANAGER_CLASS

TRAINING_RECIPES = [
    "train_expandsearch_ppo_qwen2.5-3b.sh",
    "train_expandsearch_grpo_qwen2.5-3b.sh",
    "train_searchr1_baseline_qwen2.5-3b.sh",
    "eval_expandsearch.sh",
]
LAUNCH = ["python3", "-m", "verl.trainer.main_ppo"]
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def compose_and_validate(overrides: list[str]):
    """What `python -m verl.trainer.main_ppo` does before it starts Ray: compose, then validate_config."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validate_config(
            config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
        )
        return config, need_critic(config), need_reference_policy(config)


def agent_loop_of(config):
    from expandsearch_verl.config import AgentLoopConfig

    (entry,) = OmegaConf.load(config.actor_rollout_ref.rollout.agent.agent_loop_config_path)
    knobs = {
        key: value for key, value in OmegaConf.to_container(entry).items() if key not in ("name", "_target_")
    }
    assert entry.name == "expandsearch_agent"
    return AgentLoopConfig.from_kwargs(**knobs)


def batches_of(overrides: list[str]):
    ctx = Preflight(overrides)
    assert check_config(ctx)[0].status is Status.PASS
    return check_batches(ctx)


@pytest.mark.parametrize("recipe", TRAINING_RECIPES)
def test_recipe_composes_validates_and_divides(recipe, recipe_env, dry_run, chat_model_dir):
    argv = dry_run(recipe, recipe_env())
    assert argv[:3] == LAUNCH
    config, _, _ = compose_and_validate(argv[3:])
    assert config.actor_rollout_ref.model.path == str(chat_model_dir)
    assert config.reward.custom_reward_function.path == "pkg://expandsearch_verl.reward"
    assert config.trainer.use_v1 is False and config.actor_rollout_ref.rollout.name == "vllm"
    assert config.actor_rollout_ref.rollout.max_model_len == 4096 + 3000
    # every training step logs the search metrics (expandsearch_verl/search_metrics.py)
    assert config.actor_rollout_ref.rollout.agent.agent_loop_manager_class == MANAGER_CLASS
    results = batches_of(argv[3:])
    assert [r.status for r in results] == [Status.PASS], results


def test_ppo_is_the_papers_setting(recipe_env, dry_run):
    config, use_critic, use_reference = compose_and_validate(
        dry_run("train_expandsearch_ppo_qwen2.5-3b.sh", recipe_env())[3:]
    )
    assert config.algorithm.adv_estimator == "gae" and use_critic and not use_reference
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6 and config.critic.optim.lr == 1e-5
    # 7 GPUs train (the squeezer has the 8th): 2 updates of 252 = 7 x 36 prompts, the paper's 512 / 256 on 8
    assert (config.data.train_batch_size, config.actor_rollout_ref.actor.ppo_mini_batch_size) == (504, 252)
    assert (
        config.actor_rollout_ref.rollout.n == 1
        and config.trainer.n_gpus_per_node == 7
        and config.trainer.nnodes == 1
    )
    assert config.trainer.val_only is False and config.trainer.val_before_train is False
    loop = agent_loop_of(config)
    assert (loop.max_queries, loop.topk, loop.squeeze, loop.max_turns) == (3, 10, True, 4)


def test_grpo_sets_the_group_and_the_kl_loss(recipe_env, dry_run):
    config, use_critic, use_reference = compose_and_validate(
        dry_run("train_expandsearch_grpo_qwen2.5-3b.sh", recipe_env())[3:]
    )
    assert config.algorithm.adv_estimator == "grpo" and config.actor_rollout_ref.rollout.n == 5
    assert (
        config.actor_rollout_ref.actor.use_kl_loss is True
        and config.actor_rollout_ref.actor.kl_loss_coef == 0.001
    )
    assert not use_critic and use_reference
    assert config.trainer.experiment_name == "expandsearch_grpo_qwen2.5-3b"


def test_searchr1_baseline_searches_one_query_top3_unsqueezed(recipe_env, dry_run):
    env = recipe_env()
    del env["DATA_DIR"]
    config, use_critic, _ = compose_and_validate(dry_run("train_searchr1_baseline_qwen2.5-3b.sh", env)[3:])
    loop = agent_loop_of(config)
    assert (loop.max_queries, loop.topk, loop.squeeze) == (1, 3, False)
    assert config.data.train_files.endswith("/data/searchr1/train.parquet") and use_critic


def test_eval_validates_once_without_critic_or_reference(recipe_env, dry_run, run_recipe, chat_model_dir):
    config, use_critic, use_reference = compose_and_validate(
        dry_run("eval_expandsearch.sh", recipe_env())[3:]
    )
    assert config.trainer.val_only is True and config.trainer.val_before_train is True
    assert not use_critic and not use_reference
    assert config.data.train_files == config.data.val_files and config.trainer.resume_mode == "disable"
    assert config.actor_rollout_ref.rollout.val_kwargs.do_sample is False  # greedy
    env = recipe_env()
    del env["MODEL_PATH"]
    refused = run_recipe("eval_expandsearch.sh", env)
    assert refused.returncode != 0 and "set MODEL_PATH" in refused.stderr


def test_toggles_and_extra_overrides_reach_the_launch_line(recipe_env, dry_run, tmp_path):
    env = recipe_env(
        RETRIEVER_URLS="http://10.0.0.5:8000,http://10.0.0.6:8000", SQUEEZE="false", TOPK="5", USE_V1="True"
    )
    argv = dry_run(
        "train_expandsearch_ppo_qwen2.5-3b.sh",
        env,
        "trainer.total_training_steps=300",
        "+trainer.extra_note=x",
    )
    assert argv[-2:] == [
        "trainer.total_training_steps=300",
        "+trainer.extra_note=x",
    ]  # "$@" goes last and wins
    config, _, _ = compose_and_validate(argv[3:])
    assert config.trainer.total_training_steps == 300 and config.trainer.use_v1 is True
    assert "agent_loop_manager_class" not in config.actor_rollout_ref.rollout.agent  # V1 needs its TQ manager
    loop = agent_loop_of(config)
    assert (
        loop.retriever_urls == ["http://10.0.0.5:8000", "http://10.0.0.6:8000"]
        and loop.topk == 5
        and loop.squeeze is False
    )
    assert config.actor_rollout_ref.rollout.agent.agent_loop_config_path == str(
        tmp_path / "run" / "agent_loops.yaml"
    )


def test_any_agent_loop_setting_reaches_the_yaml(recipe_env, dry_run, run_recipe):
    """AGENT_LOOP_SETTINGS: what the doctor's fixes name, e.g. the timeout its retriever check asks for."""
    settings = "timeout_s=45 connect_timeout_s=3 topk=7"  # applied last: topk=7 wins over TOPK
    argv = dry_run("train_expandsearch_ppo_qwen2.5-3b.sh", recipe_env(AGENT_LOOP_SETTINGS=settings, TOPK="5"))
    loop = agent_loop_of(compose_and_validate(argv[3:])[0])
    assert (loop.timeout_s, loop.connect_timeout_s, loop.topk) == (45, 3, 7)
    result = run_recipe(
        "train_expandsearch_ppo_qwen2.5-3b.sh", recipe_env(AGENT_LOOP_SETTINGS="timeout_s=-1")
    )
    assert result.returncode == 2 and "timeout_s=-1: Input should be greater than 0" in result.stderr


def test_a_bad_agent_loop_toggle_stops_the_recipe(recipe_env, run_recipe):
    result = run_recipe("train_expandsearch_ppo_qwen2.5-3b.sh", recipe_env(TOPK="0"))
    assert result.returncode != 0 and "topk=0: Input should be greater than 0" in result.stderr


def test_two_nodes_through_ray_job_submit(recipe_env, dry_run):
    env = recipe_env(RETRIEVER_URLS="http://10.0.0.9:8000", RAY_DASHBOARD="http://10.0.0.1:8265")
    for recipe in ("train_expandsearch_ppo_qwen2.5-3b.sh", "train_expandsearch_grpo_qwen2.5-3b.sh"):
        job = dry_run("multinode/submit.sh", {**env, "RECIPE": recipe}, "trainer.total_training_steps=500")
        assert job[: job.index("--")] == ["ray", "job", "submit", "--address", "http://10.0.0.1:8265"]
        assert job[job.index("--") + 1] == "env" and job[-2:] == [
            str(RECIPES / recipe),
            "trainer.total_training_steps=500",
        ]
        forwarded = dict(item.split("=", 1) for item in job[job.index("env") + 1 : job.index("bash")])
        assert forwarded["NNODES"] == "2" and forwarded["RETRIEVER_URLS"] == "http://10.0.0.9:8000"
        argv = dry_run(
            recipe, {**env, **forwarded}, "trainer.total_training_steps=500"
        )  # what the job runs on the head
        config, _, _ = compose_and_validate(argv[3:])
        assert (
            config.trainer.nnodes,
            config.trainer.n_gpus_per_node,
            config.trainer.total_training_steps,
        ) == (2, 8, 500)
        assert [r.status for r in batches_of(argv[3:])] == [Status.PASS], recipe
