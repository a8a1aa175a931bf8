"""`expandsearch doctor` end to end: the same overrides a recipe passes, the table, the exit status."""

from __future__ import annotations

import json

import pytest

from expandsearch_verl.cli import main
from expandsearch_verl.doctor import CHECK_NAMES
from expandsearch_verl.doctor.report import CheckResult, Status, render_table

# Facts of this CPU machine, not of the run: no GPU, no vLLM, and maybe a stale editable install.
MACHINE_BOUND = ["--skip", "gpus", "--skip", "engine", "--skip", "plugin"]


def test_a_sound_run_passes_and_exits_0(small_run, demo_retriever_url, capsys):
    status = main(
        ["doctor", *MACHINE_BOUND, *small_run(retriever_urls=f"[{demo_retriever_url}]", squeeze="false")]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.splitlines()[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert "0 failed" in out and "FAIL" not in out
    for name in (
        "config",
        "validate",
        "batches",
        "reward",
        "agent-loop",
        "model",
        "train-data",
        "val-data",
        "retriever",
        "squeezer",
    ):
        assert any(line.startswith(name + " ") and " pass " in line for line in out.splitlines()), name


def test_a_failure_exits_1_with_its_fix_under_it(small_run, tmp_path, capsys):
    status = main(
        [
            "doctor",
            "--skip-network",
            *MACHINE_BOUND,
            *small_run(f"actor_rollout_ref.model.path={tmp_path}/missing"),
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    failure = next(i for i, line in enumerate(lines) if line.startswith("model ") and " FAIL " in line)
    fix = next(line for line in lines[failure + 1 :] if "fix:" in line)
    assert fix.strip().startswith("fix: point actor_rollout_ref.model.path at a model directory")


def test_json_output_lists_every_result(small_run, capsys):
    status = main(["doctor", "--json", "--skip-network", *MACHINE_BOUND, *small_run()])
    results = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [r["check"] for r in results if r["check"] in ("gpus", "retriever")] == ["retriever", "gpus"]
    assert {r["status"] for r in results} <= {"pass", "warn", "skip"}


def test_a_word_that_is_not_an_override_is_a_usage_error(capsys):
    assert main(["doctor", "trainer.nnodes=1", "oops"]) == 2
    assert "'oops' is not a hydra override" in capsys.readouterr().err


def test_skip_names_are_the_check_names(capsys):
    assert CHECK_NAMES[:3] == ["config", "validate", "batches"] and CHECK_NAMES[-1] == "ray-nodes"


def test_the_table_wraps_details_and_fixes_under_their_check():
    long = "word " * 40
    table = render_table(
        [
            CheckResult("batches", Status.FAIL, long.strip(), "data.train_batch_size=16"),
            CheckResult("config", Status.PASS, "fine"),
        ],
        width=80,
    )
    lines = table.splitlines()
    assert lines[1].startswith("batches  FAIL    word")
    assert all(len(line) <= 80 for line in lines)
    fix = next(line for line in lines if "fix:" in line)
    assert fix.index("fix:") == lines[1].index("word")
    assert lines[-1] == "2 checks: 1 passed, 0 warnings, 1 failed, 0 skipped"


@pytest.mark.parametrize("width", [60, 80, 97, 120])
@pytest.mark.parametrize("depth", [0, 3, 7, 11])
def test_paths_urls_and_fixes_are_never_broken_by_the_wrapping(width, depth):
    """Whatever the terminal's width and the temporary directory's length (a hyphen used to break
    `.../no-model` at the end of a line), a user can copy the path, the URL and the fix whole."""
    path = "/tmp/pytest-of-user/pytest-1/" + "run-dir-" * depth + "/no-model"
    url = "http://retriever-node-0" + "-x" * depth + ".cluster.local:8000/health"
    fix = "bash recipes/launch_retriever.sh " + "GPUS=0,1,2,3,4,5,6 " * (depth + 2) + "SQUEEZER=openai"
    table = render_table(
        [CheckResult("model", Status.FAIL, f"actor {path}: no such directory; and {url} said 503", fix)],
        width=width,
    )
    tokens = table.split()
    assert f"{path}:" in tokens and url in tokens
    assert any(line.strip() == f"fix: {fix}" for line in table.splitlines())


def test_a_crashing_check_is_reported_and_the_others_still_run(monkeypatch):
    from expandsearch_verl import doctor
    from expandsearch_verl.doctor.report import passed

    def crash(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(
        doctor, "CHECKS", [("first", crash), ("second", lambda ctx: [passed("second", "ran")])]
    )
    monkeypatch.setattr(doctor, "WITHOUT_CONFIG", frozenset({"first", "second"}))
    results = doctor.run_checks(doctor.Preflight([]), skip=frozenset())
    assert [(r.check, r.status) for r in results] == [("first", Status.FAIL), ("second", Status.PASS)]
    assert "crashed: RuntimeError: boom" in results[0].detail
    assert doctor.run_checks(doctor.Preflight([]), skip=frozenset({"first"}))[0].status is Status.SKIP


def test_checks_that_need_the_config_are_skipped_when_it_did_not_compose(monkeypatch):
    from expandsearch_verl import doctor

    def needs_config(ctx):
        return [doctor.CheckResult("second", Status.PASS, str(ctx.config["trainer"]), "")]

    monkeypatch.setattr(doctor, "CHECKS", [("second", needs_config)])
    monkeypatch.setattr(doctor, "WITHOUT_CONFIG", frozenset())
    (result,) = doctor.run_checks(doctor.Preflight([]))
    assert result.status is Status.SKIP and "needs the composed config" in result.detail
