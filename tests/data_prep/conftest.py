"""Small FlashRAG-format directories written per test, good or broken on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from data_prep.catalog import DATASETS

# (id, question, golden_answers): three rows per split are enough to see merging and sampling.
THREE_ROWS = [
    ("a0", "who wrote the novel dracula", ["Bram Stoker"]),
    ("a1", "In what city was Hồ Chí Minh born?", ["Kim Liên", "Nghệ An"]),
    ("a2", "What year did the Eiffel Tower open?", ["1889"]),
]


@pytest.fixture
def three_rows() -> list[tuple[str, str, list[str]]]:
    return THREE_ROWS


def _write_split(
    root: Path, dataset: str, split: str, rows: list, raw_lines: list[str] | None = None
) -> Path:
    path = root / dataset / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = raw_lines if raw_lines is not None else [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def write_split() -> Callable[..., Path]:
    """`write_split(root, dataset, split, rows, raw_lines=None)`: (over)write one split file."""
    return _write_split


@pytest.fixture
def flashrag_dir(tmp_path: Path) -> Callable[..., Path]:
    """`make(rows_per_split=3)`: every dataset and split of the catalog, distinct questions each."""

    def make(rows_per_split: int = 3) -> Path:
        root = tmp_path / "flashrag"
        for dataset in DATASETS.values():
            for split in dataset.splits:
                rows = [
                    {
                        "id": f"{split}_{i}",
                        "question": f"{dataset.name} {split} question {i}?",
                        "golden_answers": [f"answer {i}"],
                    }
                    for i in range(rows_per_split)
                ]
                _write_split(root, dataset.name, split, rows)
        return root

    return make
