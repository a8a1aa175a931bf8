"""The rows to evaluate: a data_prep parquet, checked and turned into `run()` arguments.

verl's `RLHFDataset.__getitem__` hands `AgentLoopBase.run` every column of a row plus `raw_prompt`
(the chat messages of `prompt`) and `index`, `tools_kwargs`, `interaction_kwargs` taken from
`extra_info`; `read_rows` builds exactly those, without tokenizing (the loop renders the prompt).
Search-R1's parquet files work too (their rows have no `extra_info.id` or `question`: the index and
the last user message stand in). Every problem names the file, the row and the field, and nothing is
evaluated from a broken file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from expandsearch_verl.qa_metrics import golden_answers

REQUIRED_COLUMNS = ("data_source", "prompt", "reward_model")
_SCHEMA_HINT = (
    "expected data_prep's rows (docs/design.md, 'Parquet row': data_source, agent_name, prompt, ability, "
    "reward_model, extra_info); write them with `python -m data_prep --output-dir DIR`"
)


class RowsError(ValueError):
    """The parquet cannot be evaluated; the message names the file, the row and the field."""


@dataclass(frozen=True)
class EvalRow:
    """One question: what the output records, and the keyword arguments of the loop's `run()`."""

    data_source: str
    id: str
    question: str
    golden_answers: list[str]
    agent_name: str | None  # the row's loop; None: the evaluation's default
    run_kwargs: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the row in the output (ids repeat across datasets: nq/test_0, popqa/test_0)."""
        return (self.data_source, self.id)


def read_rows(
    path: str | Path, *, data_sources: Sequence[str] | None = None, max_per_dataset: int | None = None
) -> list[EvalRow]:
    """The rows of `path`, in file order, optionally only `data_sources` and the first N of each.

    Raises:
        RowsError: a missing or unreadable file, a missing column, a bad row, repeated ids, an
            unknown data source, or nothing left to evaluate.
    """
    path = Path(path)
    if not path.is_file():
        raise RowsError(f"{path}: no such file; {_SCHEMA_HINT}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise RowsError(f"{path}: not a readable parquet file ({error})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in table.column_names]
    if missing:
        raise RowsError(f"{path}: missing column(s) {missing} (it has {table.column_names}); {_SCHEMA_HINT}")
    rows = [_row(f"{path}: row {number}", number, record) for number, record in enumerate(table.to_pylist())]
    _check_unique(path, rows)
    if data_sources:
        available = sorted({row.data_source for row in rows})
        unknown = sorted(set(data_sources) - set(available))
        if unknown:
            raise RowsError(f"--data-sources: {unknown} not in {path}; it has {available}")
        rows = [row for row in rows if row.data_source in set(data_sources)]
    if max_per_dataset is not None:
        if max_per_dataset < 1:
            raise RowsError(f"--max-per-dataset: {max_per_dataset} must be >= 1")
        taken: Counter[str] = Counter()
        kept = []
        for row in rows:
            taken[row.data_source] += 1
            if taken[row.data_source] <= max_per_dataset:
                kept.append(row)
        rows = kept
    if not rows:
        raise RowsError(f"{path}: no rows to evaluate")
    return rows


def _row(where: str, number: int, record: dict[str, Any]) -> EvalRow:
    data_source = record.get("data_source")
    if not isinstance(data_source, str) or not data_source.strip():
        raise RowsError(f"{where}: data_source must be a non-empty string, got {data_source!r:.80}")
    prompt = record.get("prompt")
    if not _is_chat(prompt):
        raise RowsError(
            f"{where}: prompt must be a non-empty list of {{'role': str, 'content': str}} messages, "
            f"got {prompt!r:.120}"
        )
    reward_model = record.get("reward_model")
    if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
        raise RowsError(
            f"{where}: reward_model.ground_truth is missing (got reward_model={reward_model!r:.120})"
        )
    try:
        answers = golden_answers(reward_model["ground_truth"])
    except ValueError as error:
        raise RowsError(f"{where}: reward_model.ground_truth: {error}") from None
    if not any(answer.strip() for answer in answers):
        raise RowsError(f"{where}: reward_model.ground_truth has no non-blank answer")
    extra_info = record.get("extra_info") or {}
    if not isinstance(extra_info, dict):
        raise RowsError(f"{where}: extra_info must be a struct (a dict), got {type(extra_info).__name__}")
    row_id = next((extra_info[name] for name in ("id", "index") if extra_info.get(name) is not None), number)
    question = extra_info.get("question") or next(
        (message["content"] for message in reversed(prompt) if message["role"] == "user"), ""
    )
    agent_name = record.get("agent_name")
    # What RLHFDataset.__getitem__ + AgentLoopWorker pass to run(): the columns but `prompt` and
    # `agent_name` (consumed by the worker), plus these four.
    run_kwargs = {key: value for key, value in record.items() if key not in ("prompt", "agent_name")}
    run_kwargs.update(
        raw_prompt=prompt,
        extra_info=extra_info,
        index=extra_info.get("index", 0),
        tools_kwargs=extra_info.get("tools_kwargs") or {},
        interaction_kwargs=extra_info.get("interaction_kwargs") or {},
    )
    return EvalRow(
        data_source=data_source,
        id=str(row_id),
        question=str(question),
        golden_answers=answers,
        agent_name=agent_name if isinstance(agent_name, str) and agent_name else None,
        run_kwargs=run_kwargs,
    )


def _is_chat(prompt: Any) -> bool:
    return (
        isinstance(prompt, list)
        and bool(prompt)
        and all(
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
            for message in prompt
        )
    )


def _check_unique(path: Path, rows: list[EvalRow]) -> None:
    """Resuming skips rows by (data_source, id), so a repeated pair would be evaluated once."""
    counts = Counter(row.key for row in rows)
    repeated = [f"{source}/{row_id}" for (source, row_id), count in counts.items() if count > 1]
    if repeated:
        raise RowsError(
            f"{path}: {len(repeated)} (data_source, extra_info.id) pair(s) occur more than once, "
            f"e.g. {repeated[:5]}; give every row of a data source its own id"
        )
