"""The parquet contract end to end: rows written by data_prep from the shipped samples, read back the
way pandas hands them over (numpy arrays), scored by the reward and by `expandsearch score`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from expandsearch_verl.cli import main
from expandsearch_verl.reward import compute_score
from expandsearch_verl.source_table import PAPER_ORDER

REPO_ROOT = Path(__file__).resolve().parents[2]


def oracle_response(protocol: str, answer: str) -> str:
    """A well-formed trajectory of `protocol` that answers `answer` after one search."""
    if protocol == "tags":
        return f"<think>t</think>\n<search>q1\nq2</search>\n\n<information>doc</information>\n\n<think>u</think>\n<answer>{answer}</answer>"
    call = json.dumps({"name": "search", "arguments": {"query_list": ["q1", "q2"]}})
    return f"<think>t</think>\n<tool_call>\n{call}\n</tool_call>\nuser\n<tool_response>\ndoc\n</tool_response>\nassistant\n<think>u</think>\n<answer>{answer}</answer>"


@pytest.fixture(scope="module", params=["tags", "tool_call"])
def prepared_test_set(request, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp(f"prepared_{request.param}")
    command = [
        sys.executable,
        "-m",
        "data_prep",
        "--output-dir",
        str(out),
        "--protocol",
        request.param,
        "--train-datasets",
        "",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    return pd.read_parquet(out / "test.parquet")


def test_every_prepared_row_scores_through_the_reward(prepared_test_set: pd.DataFrame):
    assert set(prepared_test_set["data_source"]) == set(PAPER_ORDER)
    for row in prepared_test_set.itertuples():
        ground_truth = row.reward_model["ground_truth"]  # {"target": numpy array}
        protocol = row.extra_info["protocol"]
        right = compute_score(
            row.data_source,
            oracle_response(protocol, ground_truth["target"][0]),
            ground_truth,
            row.extra_info,
        )
        assert (right["score"], right["em"], right["format_ok"]) == (1.0, 1.0, 1.0), row.extra_info["id"]
        wrong = compute_score(
            row.data_source, oracle_response(protocol, "no such answer xyz"), ground_truth, row.extra_info
        )
        assert (wrong["score"], wrong["em"]) == (0.2, 0.0), row.extra_info["id"]


def test_expandsearch_score_reads_what_the_eval_command_will_write(
    prepared_test_set: pd.DataFrame, tmp_path: Path, capsys
):
    dump = tmp_path / "eval.jsonl"
    with dump.open("w") as stream:
        for row in prepared_test_set.itertuples():
            golds = row.reward_model["ground_truth"]["target"].tolist()
            record = {
                "data_source": row.data_source,
                "response": oracle_response(row.extra_info["protocol"], golds[0]),
                "golden_answers": golds,
                "extra_info": {key: value for key, value in row.extra_info.items()},
            }
            stream.write(json.dumps(record) + "\n")
    assert main(["score", str(dump), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["sources"]) == list(PAPER_ORDER)
    assert report["macro_average"]["em"] == 1.0 and report["n"] == len(prepared_test_set)
