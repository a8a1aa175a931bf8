"""Checks of `expandsearch eval`'s output files, shared by the eval and demo tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from expandsearch_verl.reward import SCORE_KEYS
from expandsearch_verl.trajectory import METRIC_KEYS


def read_records(output_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output_dir / "trajectories.jsonl").read_text().splitlines()]


def check_record(record: dict[str, Any], response_length: int) -> None:
    """What every line of trajectories.jsonl must satisfy, whatever the policy wrote."""
    assert set(SCORE_KEYS) <= set(record)
    assert set(METRIC_KEYS) <= set(record)
    turns = record["trajectory"]
    assert turns and turns[0]["role"] == "model"
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(turns))  # they alternate
    assert sum(turn["tokens"] for turn in turns) == record["response_tokens"] <= response_length
    observed = sum(turn["tokens"] for turn in turns if turn["role"] == "observation")
    assert observed == record["observation_tokens"]
    assert record["searches"] == record["num_searches"] == len(record["queries"])
    assert record["num_queries"] == sum(len(queries) for queries in record["queries"])
    assert len(record["generate_ms"]) == sum(turn["role"] == "model" for turn in turns)
    assert record["retrieved_ids"] == list(dict.fromkeys(record["retrieved_ids"]))  # unique, in order
    assert record["num_unique_docs"] == len(record["retrieved_ids"])


def check_output_records(output_dir: Path, n_rows: int, response_length: int) -> list[dict[str, Any]]:
    """Every record of `output_dir` checked, each of the `n_rows` rows there exactly once."""
    records = read_records(output_dir)
    assert len(records) == n_rows
    assert len({(record["data_source"], record["id"]) for record in records}) == n_rows
    for record in records:
        check_record(record, response_length)
    return records
