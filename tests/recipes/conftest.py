"""Run recipes as users do (bash, environment variables, extra arguments last), in dry-run mode unless
a test says otherwise; models and data are the tiny local ones, never the hub."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
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


def node_with_gpus(bin_dir: Path, count: int | None) -> None:
    """A stand-in `nvidia-smi` in `bin_dir` that lists `count` GPUs (None: it fails, as with no driver),
    so that a recipe's default layout never depends on the GPUs of the machine running the tests."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    listing = "".join(f"{index}\n" for index in range(count or 0))
    body = f"printf '{listing}'" if count is not None else 'echo "NVIDIA-SMI has failed" >&2; exit 9'
    stand_in = bin_dir / "nvidia-smi"
    stand_in.write_text(
        '#!/usr/bin/env bash\n[[ "$*" == "--query-gpu=index --format=csv,noheader" ]] || exit 2\n'
        + body
        + "\n"
    )
    stand_in.chmod(0o755)


def recording_stand_in(path: Path, record: Path, first: str = "") -> Path:
    """An executable that runs `first` (a shell line that may exec the real program for calls not to
    record), then writes the CUDA_VISIBLE_DEVICES it was given (or "unset") and its arguments, one a
    line, to `record`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!/usr/bin/env bash\n{first}\n"
        f'printf "%s\\n" "CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES-unset}}" "$@" > {record}\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def node_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory first on a recipe's PATH with the stand-in nvidia-smi (apart from tmp_path, which
    the recipes' own outputs fill)."""
    directory = tmp_path_factory.mktemp("node-bin")
    node_with_gpus(directory, 8)
    return directory


@pytest.fixture
def recipe_env(
    tmp_path: Path, chat_model_dir: Path, prepared_data_dir: Path, node_bin: Path
) -> Callable[..., dict[str, str]]:
    """`recipe_env(**variables)`: a clean environment for a dry run on the tiny model and the sample data."""

    def make(**variables: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in RECIPE_VARIABLES}
        env["PATH"] = (
            os.pathsep.join(  # nvidia-smi (an 8-GPU node unless a test says), expandsearch, hf, ray, shellcheck
                [str(node_bin), str(Path(sys.executable).parent), env.get("PATH", "")]
            )
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


@pytest.fixture
def gpus_on_node(node_bin: Path) -> Callable[[int | None], None]:
    """`gpus_on_node(count)`: what nvidia-smi lists for the recipes run by `recipe_env` (None: no driver)."""
    return lambda count: node_with_gpus(node_bin, count)


@dataclass
class Launched:
    """What a script started, recorded by stand-ins: the program's CUDA_VISIBLE_DEVICES and arguments,
    and for a training recipe the same of its doctor run."""

    returncode: int
    stderr: str
    visible: str | None = None
    argv: list[str] = field(default_factory=list)
    doctor_visible: str | None = None
    doctor_gpus: dict[str, str] = field(
        default_factory=dict
    )  # --train-gpus, --retriever-gpus, --squeezer-gpus


def _recorded(record: Path) -> tuple[str | None, list[str]]:
    if not record.exists():
        return None, []
    first, *argv = record.read_text().splitlines()
    return first.removeprefix("CUDA_VISIBLE_DEVICES="), argv


@pytest.fixture
def launch(tmp_path_factory: pytest.TempPathFactory, run_recipe) -> Callable[..., Launched]:
    """`launch(recipe, env, *args)`: the script run for real (not DRY_RUN) with stand-ins for what needs a
    GPU: `vllm` and `PYTHON` (verl's trainer, retriever_server), and `expandsearch doctor` (the other
    `expandsearch` commands run)."""

    work = tmp_path_factory.mktemp("launch")  # apart from tmp_path, which the recipes' outputs fill

    def run(recipe: str, env: dict[str, str], *args: str) -> Launched:
        program, doctor = work / "program-record", work / "doctor-record"
        for record in (program, doctor):
            record.unlink(missing_ok=True)
        bin_dir = work / "bin"
        recording_stand_in(bin_dir / "vllm", program)
        recording_stand_in(
            bin_dir / "expandsearch",
            doctor,
            f'[[ "$1" == doctor ]] || exec {sys.executable} -m expandsearch_verl.cli "$@"',
        )
        python = recording_stand_in(work / "python-stand-in", program)
        env = {**env, "DRY_RUN": "0", "PYTHON": str(python), "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
        result = run_recipe(recipe, env, *args)
        visible, argv = _recorded(program)
        doctor_visible, doctor_argv = _recorded(doctor)
        gpus = {flag: value for flag, value in itertools.pairwise(doctor_argv) if flag.endswith("-gpus")}
        return Launched(result.returncode, result.stderr, visible, argv, doctor_visible, gpus)

    return run
