"""`expandsearch score`: rescore a JSONL dump of trajectories with the training reward.

    expandsearch score dump.jsonl [more.jsonl ...] [--json] [--reward-kwargs shaping=false ...]

One trajectory per line, a JSON object with:
    data_source    the dataset name ("nq", "hotpotqa", ...)                         required
    response       the decoded response text (alias: solution_str)                  required
    ground_truth   {"target": [answers]} or a list of answers
                   (aliases: golden_answers, reward_model.ground_truth)             required
    extra_info     the row's extra_info, optionally with the agent loop's fields    optional
Prints EM / F1 / n per data source in the papers' order and the macro average (`--json`: every
metric). A bad line stops the run with `file:line: reason`, or is counted and skipped with
`--skip-invalid`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from expandsearch_verl.protocols import PROTOCOLS
from expandsearch_verl.reward import RewardTable, compute_score
from expandsearch_verl.source_table import aggregate_by_source

_RESPONSE_FIELDS = ("response", "solution_str")
_GROUND_TRUTH_FIELDS = ("ground_truth", "golden_answers")


class InvalidTrajectory(ValueError):
    """A dump line that cannot be scored; the message starts with `file:line:`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="DUMP.jsonl", help="trajectory dumps; '-' reads stdin")
    parser.add_argument("--json", action="store_true", help="print every metric as JSON instead of the table")
    parser.add_argument(
        "--reward-kwargs",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"reward table overrides, as in training: {', '.join(f.name for f in fields(RewardTable))}",
    )
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, help="protocol of lines whose extra_info names none (default: tags)"
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip bad lines (their count goes to stderr)"
    )


def parse_reward_kwargs(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings to checked RewardTable overrides.

    Raises:
        ValueError: an unknown key, a missing `=`, or a value RewardTable refuses.
    """
    known = {f.name for f in fields(RewardTable)}
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--reward-kwargs {pair!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        try:
            overrides[key] = value if key == "shaping" else float(value)
        except ValueError:
            raise ValueError(f"--reward-kwargs {pair!r}: {value!r} is not a number") from None
    RewardTable.from_kwargs(overrides)  # the same checks as in training
    return overrides


def _first(record: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    return next((record[name] for name in names if name in record), None)


def read_trajectory(record: Any, protocol: str | None) -> tuple[str, str, Any, dict[str, Any]]:
    """(data_source, response, ground_truth, extra_info) of one parsed line.

    Raises:
        ValueError: the first problem found, naming the field.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    data_source = record.get("data_source")
    if not isinstance(data_source, str) or not data_source:
        raise ValueError(f"'data_source' must be a non-empty string, got {data_source!r:.60}")
    response = _first(record, _RESPONSE_FIELDS)
    if not isinstance(response, str):
        raise ValueError(f"'response' (or 'solution_str') must be a string, got {type(response).__name__}")
    ground_truth = _first(record, _GROUND_TRUTH_FIELDS)
    if ground_truth is None and isinstance(record.get("reward_model"), Mapping):
        ground_truth = record["reward_model"].get("ground_truth")
    if ground_truth is None:
        raise ValueError(
            "no gold answers: give 'ground_truth', 'golden_answers' or 'reward_model.ground_truth'"
        )
    extra_info = record.get("extra_info") or {}
    if not isinstance(extra_info, Mapping):
        raise ValueError(f"'extra_info' must be an object, got {type(extra_info).__name__}")
    extra_info = dict(extra_info)
    if protocol and not extra_info.get("protocol"):
        extra_info["protocol"] = protocol
    return data_source, response, ground_truth, extra_info


def _lines(paths: list[str]) -> Iterator[tuple[str, int, str]]:
    for path in paths:
        with (
            contextlib.nullcontext(sys.stdin) if path == "-" else Path(path).open(encoding="utf-8") as stream
        ):
            for lineno, line in enumerate(stream, start=1):
                if line.strip():
                    yield ("<stdin>" if path == "-" else path), lineno, line


def score_dumps(
    paths: list[str],
    reward_kwargs: Mapping[str, Any],
    protocol: str | None = None,
    skip_invalid: bool = False,
) -> tuple[list[tuple[str, dict[str, float | int]]], int]:
    """Score every line of `paths`: ((data_source, scores) per trajectory, number of lines skipped).

    Raises:
        InvalidTrajectory: the first bad line, unless `skip_invalid`.
        OSError: a path that cannot be read.
    """
    scored, skipped = [], 0
    for path, lineno, line in tqdm(
        _lines(paths), desc="scoring", unit=" traj", disable=None, file=sys.stderr
    ):
        try:
            data_source, response, ground_truth, extra_info = read_trajectory(json.loads(line), protocol)
            scores = compute_score(data_source, response, ground_truth, extra_info, **reward_kwargs)
        except ValueError as error:  # json.JSONDecodeError is a ValueError too
            if not skip_invalid:
                raise InvalidTrajectory(f"{path}:{lineno}: {error}") from error
            skipped += 1
            continue
        scored.append((data_source, scores))
    return scored, skipped


def run(args: argparse.Namespace) -> int:
    try:
        reward_kwargs = parse_reward_kwargs(args.reward_kwargs)
        scored, skipped = score_dumps(args.paths, reward_kwargs, args.protocol, args.skip_invalid)
    except (ValueError, OSError) as error:
        print(f"expandsearch score: error: {error}", file=sys.stderr)
        return 1
    if skipped:
        print(f"expandsearch score: skipped {skipped} invalid line(s)", file=sys.stderr)
    if not scored:
        print("expandsearch score: error: no trajectories to score", file=sys.stderr)
        return 1
    table = aggregate_by_source(scored)
    if args.json:
        print(json.dumps({**table.to_dict(), "skipped": skipped}, indent=2))
    else:
        print(table.format())
    return 0
