"""A training recipe runs `expandsearch doctor` with its own overrides first, and launches only if the
doctor passes (or SKIP_DOCTOR=1). verl itself is replaced by a stand-in `PYTHON` that records its argv."""

from __future__ import annotations

import stat

import pytest

RECIPE = "train_expandsearch_ppo_qwen2.5-3b.sh"
SMALL = [
    "data.train_batch_size=16",
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "data.max_prompt_length=1024",
    "data.max_response_length=2048",
]


@pytest.fixture
def launch(recipe_env, tmp_path, demo_retriever_url):
    """(environment, file the stand-in for verl writes its argv to)."""
    calls = tmp_path / "verl-argv"
    verl = tmp_path / "python-stand-in"
    verl.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {calls}\n')
    verl.chmod(verl.stat().st_mode | stat.S_IEXEC)
    env = recipe_env(
        DRY_RUN="0",
        PYTHON=str(verl),
        TRAIN_GPUS="0,1",
        ACTOR_MICRO_BATCH="4",
        CRITIC_MICRO_BATCH="4",
        LOG_PROB_MICRO_BATCH="8",
        RETRIEVER_URLS=demo_retriever_url,
        SQUEEZE="false",
        DOCTOR_FLAGS="--skip gpus --skip engine --skip plugin",
    )  # this CPU machine's facts
    return env, calls


def test_a_passing_doctor_lets_the_recipe_launch(launch, run_recipe):
    env, calls = launch
    launched = run_recipe(RECIPE, env, *SMALL)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "0 failed" in launched.stdout
    argv = calls.read_text().splitlines()
    assert argv[:2] == ["-m", "verl.trainer.main_ppo"] and argv[-len(SMALL) :] == SMALL


def test_a_failing_doctor_stops_the_recipe_unless_skipped(launch, run_recipe, tmp_path):
    env, calls = launch
    broken = {**env, "MODEL_PATH": str(tmp_path / "no-model")}
    stopped = run_recipe(RECIPE, broken, *SMALL)
    assert stopped.returncode == 1 and not calls.exists()
    words = " ".join(stopped.stdout.split())  # the table wraps at spaces, whatever the path's length
    assert "FAIL" in stopped.stdout and f"{tmp_path / 'no-model'}: no such directory" in words

    forced = run_recipe(RECIPE, {**broken, "SKIP_DOCTOR": "1"}, *SMALL)
    assert forced.returncode == 0 and calls.exists() and "CHECK" not in forced.stdout
