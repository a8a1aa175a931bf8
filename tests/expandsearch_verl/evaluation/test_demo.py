"""`expandsearch demo` end to end: data_prep, a real `serve --demo` child process, eval, the view.

The default suite runs it at CI size (one question per dataset, the extractive squeezer, the tiny
chat model as the policy, a short budget); the slow test runs the README's command as is.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from record_checks import check_output_records

from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.evaluation.demo import _print_search_turn
from expandsearch_verl.evaluation.search_turn import query_list
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
    assert "== 4/5 one trajectory" in out and LEGEND in out and "demo finished in" in out
    live = out.split("== 5/5 a search turn, live", 1)[1]  # printed while the server is up
    assert "the search turn failed" not in live
    assert "fused documents (" in live and re.search(r"timings_ms: .*total \d+", live)
    observation = live.split(OPEN, 1)[1].split(CLOSE, 1)[0]
    assert "<information>" in observation and observation.strip() != "<information>\n</information>"
    assert str(output / "eval" / "trajectories.jsonl") in out
    return records


def test_demo_at_ci_size(tmp_path, chat_model_dir, expandsearch_cli):
    output = tmp_path / "demo"
    status, out, err = expandsearch_cli(
        "demo", "--no-train", "--fast", "--policy-model", chat_model_dir, "--output-dir", output,
        "--response-length", 48,
    )  # fmt: skip
    assert status == 0, err
    _check_demo_outputs(output, out, 48)


def _check_trained_demo(output, out: str, policies: list[str], response_length: int) -> None:
    """Every policy evaluated on the same unseen test questions, the table, one trajectory."""
    assert "TEST questions per dataset (never trained on)" in out
    assert "warm start: verl's SFT trainer on CPU" in out and "on 2 cores; cached after)" in out
    ids = None
    for name in policies:
        records = check_output_records(output / "eval" / name, 7, response_length)
        assert ids is None or {r["id"] for r in records} == ids  # the same questions for every policy
        ids = {r["id"] for r in records}
    train_ids = set(
        pq.read_table(output / "train" / "examples" / "warm_start.parquet").column("id").to_pylist()
    )
    assert not train_ids & ids  # no test question was trained on
    table = out.split("before and after, on the same unseen test questions", 1)[1]
    header, *rows = table.strip().splitlines()[: 1 + len(policies)]
    assert header.split()[:3] == ["policy", "searches/traj", "queries/search"] and "EM" in header
    assert rows[1].startswith("after the warm start")
    for row, name in zip(rows, policies, strict=True):
        summary = json.loads((output / "eval" / name / "summary.json").read_text())
        assert (
            f"{summary['em_macro_average']:.3f}" in row and f"{summary['searches_per_trajectory']:.2f}" in row
        )
    assert "one trajectory of the policy" in out and LEGEND in out and "demo finished in" in out


def test_the_trained_demo_at_ci_size(tmp_path, chat_model_dir, expandsearch_cli, monkeypatch):
    import retriever_server.settings

    monkeypatch.setattr(retriever_server.settings, "default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.chdir(tmp_path)  # a user's directory, not the repository's: the recipe runs from there
    status, out, err = expandsearch_cli(
        "demo", "--fast", "--policy-model", chat_model_dir, "--output-dir", "demo", "--sft-steps", 2,
        "--grpo-steps", 1,
    )  # fmt: skip
    assert status == 0, err
    assert "warm start trained:" in out and re.search(
        r"warm start \(SFT\): 100%.* 2/2 ", out
    )  # the progress bar
    _check_trained_demo(tmp_path / "demo", out, ["shipped", "warm_start", "grpo"], 512)
    assert "== 6/6 before and after" in out  # the cache: tests/expandsearch_verl/warm_start/test_finetune.py
    assert not (tmp_path / "demo" / "train" / "grpo" / "checkpoints").exists()  # published, then removed


@pytest.mark.slow
def test_demo_as_the_readme_runs_it(tmp_path, smollm2_dir, expandsearch_cli):
    output = tmp_path / "demo"
    status, out, err = expandsearch_cli("demo", "--output-dir", output)
    assert status == 0, err
    _check_trained_demo(output, out, ["shipped", "warm_start", "grpo"], 512)
    warm = json.loads((output / "eval" / "warm_start" / "summary.json").read_text())
    assert (
        warm["searches_per_trajectory"] > 0.5 and warm["queries_per_search"] > 1.5
    )  # it searches, with variants


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


def test_search_turn_queries_come_from_the_question_only():
    question = "Who wrote the novel Dracula?"
    assert query_list(question) == [question, "wrote novel Dracula"]
    assert query_list("Dracula") == ["Dracula"]  # no key-term variant that repeats the question


def test_a_failed_live_search_turn_is_printed_not_raised(chat_model_dir, free_port, capsys):
    config = AgentLoopConfig(retriever_urls=[f"http://127.0.0.1:{free_port}"], max_retries=0)
    _print_search_turn("Who wrote Dracula?", "tiny", str(chat_model_dir), config)
    out = capsys.readouterr().out
    assert "tiny rarely writes a well-formed search" in out
    assert "the search turn failed: the retriever could not be reached" in out


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
    command = [
        sys.executable,
        "-m",
        "expandsearch_verl.cli",
        "demo",
        "--no-train",
        "--fast",
        "--output-dir",
        str(tmp_path),
    ]
    process = subprocess.Popen(
        [*command, "--policy-model", str(chat_model_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:  # data_prep is done; the server is being started
        if line.startswith("== 2/5"):
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
