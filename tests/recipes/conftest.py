"""Run recipes as users do (bash, environment variables, extra arguments last), in dry-run mode unless
a test says otherwise; models and data are the tiny local ones, never the hub."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPES_DIR = REPO / "recipes"
# Everything a recipe reads from the environment; cleared so the caller's shell cannot leak in.
RECIPE_VARIABLES = (
    "MODEL_PATH",
    "CRITIC_MODEL_PATH",
    "DATA_DIR",
    "TRAIN_FILE",
    "VAL_FILE",
    "RETRIEVER_URLS",
    "EXPERIMENT_NAME",
    "RUN_DIR",
    "NNODES",
    "GPUS_PER_NODE",
    "PYTHON",
    "ADV_ESTIMATOR",
    "ROLLOUT_N",
    "USE_KL_LOSS",
    "NUM_VARIANTS",
    "TOPK",
    "SQUEEZE",
    "MAX_TURNS",
    "PROTOCOL",
    "AGENT_LOOP_SETTINGS",
    "REWARD_SHAPING",
    "VAL_ONLY",
    "USE_V1",
    "TOTAL_TRAINING_STEPS",
    "LOGGER",
    "DRY_RUN",
    "SKIP_DOCTOR",
    "DOCTOR_FLAGS",
    "ACTOR_MICRO_BATCH",
    "CRITIC_MICRO_BATCH",
    "LOG_PROB_MICRO_BATCH",
    "RECIPE",
    "RAY_DASHBOARD",
    "HEAD_ADDRESS",
    "WIKI18_DIR",
    "CORPUS",
    "DENSE_INDEX",
    "GPUS",
    "HOST",
    "PORT",
    "SQUEEZER",
    "SQUEEZER_URL",
    "SQUEEZER_MODEL",
    "SQUEEZER_API_KEY_ENV",
    "SQUEEZER_TOKENIZER",
    "SQUEEZER_CACHE_DB",
    "MODEL",
    "TP",
    "API_KEY",
    "BLOCK",
    "RAY_ADDRESS",
    "CUDA_VISIBLE_DEVICES",
    "TRAIN_GPUS",
    "RETRIEVER_GPUS",
    "SQUEEZER_GPUS",
    "ROLLOUT",
    "USE_DYNAMIC_BSZ",
    "TRAIN_BATCH_SIZE",
    "PPO_MINI_BATCH_SIZE",
    "ACTOR_TOKENS_PER_GPU",
    "LOG_PROB_TOKENS_PER_GPU",
    "CRITIC_TOKENS_PER_GPU",
    "VAL_MAX_SAMPLES",
    "VAL_BATCH_SIZE",
    # DEVICE=cpu and recipes/train_tiny_cpu.sh
    "DEVICE",
    "STEPS",
    "SAVE_FREQ",
    "TEST_FREQ",
    "VAL_BEFORE_TRAIN",
    "BATCH",
    "MAX_PROMPT_LENGTH",
    "MAX_RESPONSE_LENGTH",
    "LR",
    "VAL_DATASETS",
    "VAL_PER_DATASET",
    "RETRIEVER_PORT",
    "RETRIEVER_TIMEOUT",
    "VERL_PLATFORM",
    "VERL_USE_EXTERNAL_MODULES",
)


@pytest.fixture
def recipe_env(
    tmp_path: Path, chat_model_dir: Path, prepared_data_dir: Path
) -> Callable[..., dict[str, str]]:
    """`recipe_env(**variables)`: a clean environment for a dry run on the tiny model and the sample data."""

    def make(**variables: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in RECIPE_VARIABLES}
        env["PATH"] = (
            f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # expandsearch, hf, ray, shellcheck
        )
        env["PYTHONPATH"] = str(REPO)  # this checkout, whatever is installed
        env.update(
            MODEL_PATH=str(chat_model_dir),
            DATA_DIR=str(prepared_data_dir),
            RUN_DIR=str(tmp_path / "run"),
            DRY_RUN="1",
        )
        env.update(variables)
        return env

    return make


@pytest.fixture
def run_recipe() -> Callable[..., subprocess.CompletedProcess]:
    """`run_recipe(relative_path, env, *args)`: bash RECIPE ARGS, output captured, not checked."""

    def run(recipe: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(RECIPES_DIR / recipe), *args], env=env, capture_output=True, text=True, timeout=600
        )

    return run


@pytest.fixture
def dry_run(run_recipe) -> Callable[..., list[str]]:
    """`dry_run(relative_path, env, *args)`: the command the recipe would run, one argument per item."""

    def run(recipe: str, env: dict[str, str], *args: str) -> list[str]:
        result = run_recipe(recipe, env, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    return run
