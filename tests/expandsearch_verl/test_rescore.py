"""`expandsearch score`: the installed command on real JSONL dumps, good and bad."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from expandsearch_verl.cli import main
from expandsearch_verl.rescore import parse_reward_kwargs, read_trajectory

REPO_ROOT = Path(__file__).resolve().parents[2]


def response(answer: str) -> str:
    return f"<think>t</think>\n<search>q</search>\n\n<information>doc</information>\n\n<think>u</think>\n<answer>{answer}</answer>"


TRAJECTORIES = [
    {"data_source": "hotpotqa", "response": response("yes"), "golden_answers": ["yes"]},
    {"data_source": "hotpotqa", "response": response("no"), "golden_answers": ["yes"]},
    {"data_source": "nq", "response": response("Paris, France"), "ground_truth": {"target": ["Paris"]}},
    {"data_source": "nq", "solution_str": "Paris", "reward_model": {"ground_truth": {"target": ["Paris"]}}},
    {
        "data_source": "custom",
        "response": response("x"),
        "ground_truth": "x",
        "extra_info": {"protocol": "tags"},
    },
]


def write_dump(path: Path, records: list, blank_lines: bool = True) -> Path:
    lines = [json.dumps(record) if not isinstance(record, str) else record for record in records]
    path.write_text(("\n\n" if blank_lines else "\n").join(lines) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("expandsearch")), "score", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_table_per_source_in_paper_order_with_macro_average(tmp_path: Path):
    out = run_cli(str(write_dump(tmp_path / "dump.jsonl", TRAJECTORIES)))
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert rows[0] == ["source", "EM", "F1", "n"]
    assert rows[2] == [
        "nq",
        "0.000",
        "0.333",
        "2",
    ]  # "Paris, France": F1 2/3; the bare "Paris" has no answer tag
    assert rows[3] == ["hotpotqa", "0.500", "0.500", "2"]
    assert rows[4] == ["custom", "1.000", "1.000", "1"]
    assert rows[-1] == ["macro", "average", "(3)", "0.500", "0.611", "5"]


def test_json_output_with_reward_kwargs_and_several_files(tmp_path: Path, capsys):
    first = write_dump(tmp_path / "a.jsonl", TRAJECTORIES[:2])
    second = write_dump(tmp_path / "b.jsonl", TRAJECTORIES[2:])
    code = main(
        [
            "score",
            str(first),
            str(second),
            "--json",
            "--reward-kwargs",
            "shaping=false",
            "wrong_malformed=0.5",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5 and report["skipped"] == 0
    assert report["sources"]["hotpotqa"] == pytest.approx(
        {
            "n": 2,
            "score": 0.5,
            "em": 0.5,
            "f1": 0.5,
            "subem": 0.5,
            "format_ok": 1.0,
            "has_answer": 1.0,
            "num_searches": 1.0,
            "num_queries": 1.0,
            "retrieval_hit": 0.0,
        }
    )
    assert report["macro_average"]["n_sources"] == 3
    assert report["sources"]["nq"]["score"] == report["sources"]["nq"]["em"] == 0.0  # shaping off


def test_stdin_and_the_protocol_default(tmp_path: Path, capsys, monkeypatch):
    call = '<tool_call>{"name": "search", "arguments": {"query_list": ["a"]}}</tool_call>'
    tool = f"<think>t</think>{call}\nuser\n<tool_response>r</tool_response>\nassistant\n<think>u</think><answer>Paris</answer>"
    lines = json.dumps({"data_source": "nq", "response": tool, "ground_truth": ["Paris"]})
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines + "\n"))
    assert main(["score", "-", "--json", "--protocol", "tool_call"]) == 0
    assert json.loads(capsys.readouterr().out)["sources"]["nq"]["format_ok"] == 1.0


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "dump.jsonl:3: Expecting property name"),
        ("[1, 2]", "dump.jsonl:3: expected a JSON object, got list"),
        (
            '{"response": "x", "ground_truth": ["a"]}',
            "dump.jsonl:3: 'data_source' must be a non-empty string",
        ),
        (
            '{"data_source": "nq", "ground_truth": ["a"]}',
            "dump.jsonl:3: 'response' (or 'solution_str') must be a string",
        ),
        ('{"data_source": "nq", "response": "x"}', "dump.jsonl:3: no gold answers"),
        (
            '{"data_source": "nq", "response": "x", "ground_truth": {"answers": ["a"]}}',
            "dump.jsonl:3: ground_truth must be",
        ),
        (
            '{"data_source": "nq", "response": "x", "ground_truth": ["a"], "extra_info": [1]}',
            "'extra_info' must be an object",
        ),
        (
            '{"data_source": "nq", "response": "x", "ground_truth": ["a"], "extra_info": {"protocol": "xml"}}',
            "protocol must be one of",
        ),
    ],
)
def test_a_bad_line_stops_the_run_naming_file_and_line(tmp_path: Path, bad_line: str, message: str):
    dump = write_dump(
        tmp_path / "dump.jsonl", [TRAJECTORIES[0], TRAJECTORIES[1], bad_line], blank_lines=False
    )
    out = run_cli(str(dump))
    assert out.returncode == 1
    assert out.stdout == ""
    assert message in out.stderr


def test_skip_invalid_counts_what_it_skipped(tmp_path: Path):
    dump = write_dump(
        tmp_path / "dump.jsonl", [TRAJECTORIES[0], "{oops", '{"data_source": "nq"}', TRAJECTORIES[2]]
    )
    out = run_cli(str(dump), "--skip-invalid")
    assert out.returncode == 0, out.stderr
    assert "skipped 2 invalid line(s)" in out.stderr
    assert out.stdout.splitlines()[-1].split()[-1] == "2"  # two trajectories scored


def test_nothing_to_score_and_unreadable_files_are_errors(tmp_path: Path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert "no trajectories to score" in run_cli(str(empty)).stderr
    missing = run_cli(str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["shaping"], "expected KEY=VALUE"),
        (["score=1"], "KEY one of ['correct_malformed'"),
        (["wrong_malformed=high"], "'high' is not a number"),
        (["shaping=maybe"], "reward_kwargs.shaping must be true or false"),
        (["correct_well_formed=nan"], "must be a finite number"),
    ],
)
def test_reward_kwargs_are_checked_before_scoring(pairs: list[str], message: str):
    with pytest.raises(ValueError) as error:
        parse_reward_kwargs(pairs)
    assert message in str(error.value)


def test_reward_kwargs_parse():
    assert parse_reward_kwargs(["shaping=False", "retrieval_bonus=0.1"]) == {
        "shaping": "False",
        "retrieval_bonus": 0.1,
    }


def test_read_trajectory_fills_the_protocol_only_where_missing():
    record = {"data_source": "nq", "response": "x", "ground_truth": ["a"], "extra_info": {"protocol": "tags"}}
    assert read_trajectory(record, "tool_call")[3] == {"protocol": "tags"}
    del record["extra_info"]
    assert read_trajectory(record, "tool_call")[3] == {"protocol": "tool_call"}
    assert read_trajectory(record, None)[3] == {}
