"""Read FlashRAG-format QA splits (`id`, `question`, `golden_answers`, `metadata`) and validate them.

Two sources, one shape: a local directory laid out like the hub dataset
(`DIR/<dataset>/<split>.jsonl`), or the hub dataset itself through `datasets` when a network is
there. Every row is validated before anything is written: a malformed JSON line stops the run with
its file and line; rows without a usable question or answers stop it with up to 10 offending ids
(or are skipped and counted with `skip_invalid`); rows whose answers are all empty and repeated
ids are always skipped and counted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.catalog import DATASETS, HUB_DATASET
from data_prep.errors import DataPrepError

logger = logging.getLogger(__name__)

MAX_LISTED_INVALID = 10
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    golden_answers: tuple[str, ...]


@dataclass
class QASplit:
    """One dataset split after validation, with what was skipped and why."""

    dataset: str
    split: str
    source: str  # file path or hub address, for messages
    examples: list[QAExample] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def _clean_answers(value: Any) -> tuple[str, ...] | None:
    """Answers as stripped, non-empty strings; None when `value` is not a list of scalars."""
    if not isinstance(value, list | tuple):
        return None
    answers = []
    for answer in value:
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            return None
        text = str(answer).strip()
        if text:
            answers.append(text)
    return tuple(dict.fromkeys(answers))


def _problem(row: Any) -> str | None:
    """Why `row` cannot become a training example, or None if it can."""
    if not isinstance(row, dict):
        return f"row is a JSON {type(row).__name__}, expected an object"
    if row.get("id") is None:
        return "missing 'id'"
    question = row.get("question")
    if question is None:
        return "missing 'question'"
    if not isinstance(question, str) or not question.strip():
        return "'question' must be a non-empty string"
    if row.get("golden_answers") is None:
        return "missing 'golden_answers'"
    if _clean_answers(row["golden_answers"]) is None:
        return "'golden_answers' must be a list of strings"
    return None


def collect_split(
    rows: Iterable[tuple[int, Any]], dataset: str, split: str, source: str, skip_invalid: bool
) -> QASplit:
    """Validate `(line_number, row)` pairs into a QASplit (see the module docstring for the rules)."""
    result = QASplit(dataset, split, source)
    seen: set[str] = set()
    invalid: list[str] = []
    for line_no, row in rows:
        problem = _problem(row)
        if problem is not None:
            ident = row.get("id") if isinstance(row, dict) and row.get("id") is not None else None
            invalid.append(
                f"id {ident!r} (line {line_no}): {problem}"
                if ident is not None
                else f"line {line_no}: {problem}"
            )
            continue
        example_id = str(row["id"])
        answers = _clean_answers(row["golden_answers"])
        if not answers:
            result.skipped["empty golden_answers"] += 1
        elif example_id in seen:
            result.skipped["duplicate id"] += 1
        else:
            seen.add(example_id)
            result.examples.append(QAExample(example_id, row["question"].strip(), answers))
    if invalid and not skip_invalid:
        listed = "\n  ".join(invalid[:MAX_LISTED_INVALID])
        more = (
            f"\n  ... and {len(invalid) - MAX_LISTED_INVALID} more"
            if len(invalid) > MAX_LISTED_INVALID
            else ""
        )
        raise DataPrepError(
            f"{source}: {len(invalid)} invalid row(s):\n  {listed}{more}\n"
            "Fix them, or pass --skip-invalid to skip and count them."
        )
    if invalid:
        result.skipped["invalid"] += len(invalid)
    return result


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(
            tqdm(lines, desc=str(path), unit=" rows", disable=None, leave=False), 1
        ):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise DataPrepError(
                    f"{path}:{line_no}: malformed JSON ({err.msg} at column {err.colno})"
                ) from None


def split_path(input_dir: Path, dataset: str, split: str) -> Path:
    return input_dir / dataset / f"{split}.jsonl"


def load_local(input_dir: Path, dataset: str, split: str, skip_invalid: bool = False) -> QASplit:
    """Read `input_dir/<dataset>/<split>.jsonl`."""
    path = split_path(input_dir, dataset, split)
    if not path.is_file():
        available = sorted(p.stem for p in (input_dir / dataset).glob("*.jsonl"))
        hint = (
            f"found splits: {', '.join(available)}" if available else f"no files under {input_dir / dataset}"
        )
        raise DataPrepError(f"{path}: no such file ({hint}); expected layout DIR/<dataset>/<split>.jsonl")
    return collect_split(_jsonl_rows(path), dataset, split, str(path), skip_invalid)


def load_hub(dataset: str, split: str, skip_invalid: bool = False, cache_dir: str | None = None) -> QASplit:
    """Read one split of `RUC-NLPIR/FlashRAG_datasets` through `datasets` (needs a network once)."""
    import datasets  # heavy; only the hub path needs it

    address = f"{HUB_DATASET}/{dataset}[{split}]"
    try:
        table = datasets.load_dataset(HUB_DATASET, dataset, split=split, cache_dir=cache_dir)
    except Exception as err:  # offline, unknown split, hub outage: all end the same way
        raise DataPrepError(
            f"cannot load {address} from the hub ({type(err).__name__}: {err}). "
            f"Offline? Copy the FlashRAG JSONL files to DIR/<dataset>/<split>.jsonl and pass --input-dir DIR "
            f"(the layout of {HUB_DATASET}; data_prep/samples is a small example)."
        ) from None
    return collect_split(enumerate(table, 1), dataset, split, address, skip_invalid)


def known_split(dataset: str, split: str) -> str:
    """`split`, or a clear error when FlashRAG does not publish it for `dataset`."""
    splits = DATASETS[dataset].splits
    if split not in splits:
        raise DataPrepError(f"{dataset} has no '{split}' split in FlashRAG (it has: {', '.join(splits)})")
    return split
