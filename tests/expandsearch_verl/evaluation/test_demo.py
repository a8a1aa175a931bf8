"""`expandsearch demo` end to end: data_prep, a real `serve --demo` child process, eval, the view.

The default suite runs it at CI size (one question per dataset, the extractive squeezer, the tiny
chat model as the policy, a short budget); the slow test runs the README's command as is.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from record_checks import check_output_records

from expandsearch_verl.evaluation.trajectory_view import CLOSE, LEGEND, OPEN, pick_example, render
from expandsearch_verl.reward import SCORE_KEYS
from expandsearch_verl.source_table import PAPER_ORDER


def _check_demo_outputs(output, out: str, response_length: int) -> list[dict]:
    for path in ("data/test.parquet", "eval/trajectories.jsonl", "eval/summary.json"):
        assert (output / path).is_file(), path
    records = check_output_records(output / "eval", 7, response_length)  # the agent-loop invariants
    assert all(set(SCORE_KEYS) <= set(record) for record in records)
    summary = json.loads((output / "eval" / "summary.json").read_text())
    assert list(summary["table"]["sources"]) == list(PAPER_ORDER)
    for source in PAPER_ORDER:
        assert f"\n{source} " in out
    assert "== 4/4 one trajectory" in out and LEGEND in out and "demo finished in" in out
    assert str(output / "eval" / "trajectories.jsonl") in out
    return records


def test_demo_at_ci_size(tmp_path, chat_model_dir, expandsearch_cli):
    output = tmp_path / "demo"
    status, out, err = expandsearch_cli(
        "demo", "--fast", "--policy-model", chat_model_dir, "--output-dir", output, "--response-length", 48
    )
    assert status == 0, err
    _check_demo_outputs(output, out, 48)


@pytest.mark.slow
def test_demo_as_the_readme_runs_it(tmp_path, smollm2_dir, expandsearch_cli):
    output = tmp_path / "demo"
    status, out, err = expandsearch_cli("demo", "--output-dir", output)
    assert status == 0, err
    records = _check_demo_outputs(output, out, 256)
    assert sum(record["searches"] for record in records) > 0  # SmolLM2 does search now and then


def test_the_view_marks_observations():
    record = {
        "data_source": "nq", "id": "1", "question": "q?", "golden_answers": ["x"], "answer": "x",
        "em": 1.0, "f1": 1.0, "searches": 1, "queries": [["a", "b"]],
        "trajectory": [
            {"role": "model", "text": "<search>a</search>", "tokens": 5},
            {"role": "observation", "text": "<information>doc</information>", "tokens": 7},
            {"role": "model", "text": "<answer>x</answer>", "tokens": 4},
        ],
    }  # fmt: skip
    plain = render(record)
    assert f"{OPEN}<information>doc</information>{CLOSE}  (7 masked tokens)" in plain
    assert "<search>a</search>" in plain and "\033" not in plain
    assert "\033[2m" in render(record, color=True)
    assert pick_example([{**record, "searches": 0, "em": 1.0}, record]) is record
    assert pick_example([]) is None


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


def test_sigterm_while_the_server_starts_leaves_no_orphan(tmp_path, chat_model_dir):
    command = [sys.executable, "-m", "expandsearch_verl.cli", "demo", "--fast", "--output-dir", str(tmp_path)]
    process = subprocess.Popen(
        [*command, "--policy-model", str(chat_model_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:  # data_prep is done; the server is being started
        if line.startswith("== 2/4"):
            break
    deadline = time.monotonic() + 60
    while not (server := _children(process.pid)):
        assert time.monotonic() < deadline and process.poll() is None, "no server child appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    assert "interrupted" in rest
    assert not [pid for pid in server if Path(f"/proc/{pid}").exists()], "the server was orphaned"
    assert (tmp_path / "data" / "test.parquet").is_file()
    assert not list(tmp_path.rglob("*.tmp*"))  # nothing half-written left behind
