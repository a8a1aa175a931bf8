"""Assemble the train and test sets: load and validate every split, merge, shuffle/sample, map to rows.

Train = the train splits of the training datasets (NQ + HotpotQA by default) merged and shuffled
with the seed. Test = each evaluation dataset's test split (dev where FlashRAG has no test), kept
in file order, optionally sampled per dataset. Sampling uses one RNG per dataset seeded by
`(seed, dataset)`, so adding a dataset to the list does not change the rows drawn for the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.catalog import DATASETS
from data_prep.errors import DataPrepError
from data_prep.flashrag import QAExample, QASplit, known_split, load_hub, load_local
from data_prep.rows import make_row
from data_prep.templates import system_prompt


@dataclass(frozen=True)
class PrepOptions:
    input_dir: Path | None  # None: the hub dataset
    train_datasets: tuple[str, ...]
    test_datasets: tuple[str, ...]
    strategy: str = "expandsearch"
    protocol: str = "tags"
    num_variants: int = 3
    seed: int = 42
    max_per_dataset: int | None = None  # test: at most this many rows per dataset
    sample_ratio: float | None = None  # test: this fraction of each dataset (at least one row)
    max_train: int | None = None  # train: keep the first N rows after shuffling
    skip_invalid: bool = False
    cache_dir: str | None = None

    def validate(self) -> None:
        problems = []
        if self.max_per_dataset is not None and self.max_per_dataset < 1:
            problems.append(f"--max-per-dataset: {self.max_per_dataset} must be >= 1")
        if self.sample_ratio is not None and not 0.0 < self.sample_ratio <= 1.0:
            problems.append(f"--sample-ratio: {self.sample_ratio} must be in (0, 1]")
        if self.max_train is not None and self.max_train < 1:
            problems.append(f"--max-train: {self.max_train} must be >= 1")
        if not self.train_datasets and not self.test_datasets:
            problems.append("--train-datasets and --test-datasets are both empty: nothing to do")
        try:
            system_prompt(self.strategy, self.protocol, self.num_variants)
        except ValueError as err:
            problems.append(str(err))
        if problems:
            raise DataPrepError("invalid options:\n  " + "\n  ".join(problems))


@dataclass
class BuiltSet:
    rows: list[dict[str, Any]]
    splits: list[QASplit] = field(default_factory=list)  # what was read, for the summary


def _load(options: PrepOptions, dataset: str, split: str) -> QASplit:
    split = known_split(dataset, split)
    if options.input_dir is None:
        return load_hub(dataset, split, options.skip_invalid, options.cache_dir)
    return load_local(options.input_dir, dataset, split, options.skip_invalid)


def _rows(options: PrepOptions, tagged: list[tuple[str, str, QAExample]]) -> list[dict[str, Any]]:
    system = system_prompt(options.strategy, options.protocol, options.num_variants)
    return [
        make_row(example, index, split, dataset, system, options.protocol)
        for index, (dataset, split, example) in enumerate(tagged)
    ]


def build_train(options: PrepOptions) -> BuiltSet:
    splits = [_load(options, dataset, "train") for dataset in options.train_datasets]
    tagged = [(s.dataset, s.split, example) for s in splits for example in s.examples]
    random.Random(options.seed).shuffle(tagged)
    if options.max_train is not None:
        tagged = tagged[: options.max_train]
    return BuiltSet(_rows(options, tagged), splits)


def _sample(options: PrepOptions, split: QASplit) -> list[QAExample]:
    n = len(split.examples)
    keep = n
    if options.sample_ratio is not None:
        keep = max(1, round(n * options.sample_ratio)) if n else 0
    if options.max_per_dataset is not None:
        keep = min(keep, options.max_per_dataset)
    if keep >= n:
        return split.examples
    chosen = random.Random(f"{options.seed}/{split.dataset}").sample(range(n), keep)
    return [split.examples[i] for i in sorted(chosen)]


def build_test(options: PrepOptions) -> BuiltSet:
    splits = [_load(options, dataset, DATASETS[dataset].eval_split) for dataset in options.test_datasets]
    tagged = [(s.dataset, s.split, example) for s in splits for example in _sample(options, s)]
    return BuiltSet(_rows(options, tagged), splits)


def check_not_empty(name: str, built: BuiltSet) -> None:
    if not built.rows:
        sources = ", ".join(s.source for s in built.splits)
        raise DataPrepError(f"{name}: no valid rows left in {sources}; nothing written")
