"""`python -m data_prep`: FlashRAG-format QA -> `train.parquet` and `test.parquet` for verl.

Examples:
    python -m data_prep --output-dir outputs/data                       # the shipped samples
    python -m data_prep --input-dir ~/flashrag --output-dir data/expandsearch
    python -m data_prep --from-hub --output-dir data/searchr1 --strategy searchr1 --sample-ratio 0.1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from data_prep.build import BuiltSet, PrepOptions, build_test, build_train, check_not_empty
from data_prep.catalog import HUB_DATASET, TEST_DATASETS, TRAIN_DATASETS, parse_dataset_list
from data_prep.errors import DataPrepError
from data_prep.flashrag import SAMPLES_DIR
from data_prep.parquet import refuse_existing, write_tables
from data_prep.templates import MAX_VARIANTS, STRATEGIES
from expandsearch_verl.protocols import DEFAULT_PROTOCOL, PROTOCOLS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Turn FlashRAG-format QA data into the verl parquet files ExpandSearch trains and evaluates on.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--input-dir",
        type=Path,
        default=SAMPLES_DIR,
        help="local FlashRAG layout: DIR/<dataset>/<split>.jsonl",
    )
    source.add_argument("--from-hub", action="store_true", help=f"read {HUB_DATASET} through `datasets`")
    parser.add_argument("--cache-dir", help="`datasets` cache directory (with --from-hub)")
    parser.add_argument(
        "--output-dir", type=Path, required=True, help="where train.parquet / test.parquet go"
    )
    parser.add_argument("--train-datasets", default=",".join(TRAIN_DATASETS), help="comma list; '' for none")
    parser.add_argument("--test-datasets", default=",".join(TEST_DATASETS), help="comma list; '' for none")
    parser.add_argument("--strategy", choices=STRATEGIES, default="expandsearch", help="prompt strategy")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL, help="action protocol of the agent"
    )
    parser.add_argument(
        "--num-variants",
        type=int,
        default=3,
        help=f"query variants asked per search (expandsearch, 1..{MAX_VARIANTS})",
    )
    parser.add_argument("--seed", type=int, default=42, help="shuffling and sampling seed")
    parser.add_argument("--max-per-dataset", type=int, help="test: at most N rows per dataset")
    parser.add_argument("--sample-ratio", type=float, help="test: keep this fraction of each dataset")
    parser.add_argument("--max-train", type=int, help="train: keep N rows after shuffling")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip and count rows without question/answers"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


def summary_table(built: dict[str, BuiltSet]) -> str:
    """Rows per (split, data_source), answers per question, and what was skipped."""
    lines = [f"{'file':<6} {'data_source':<16} {'split':<6} {'rows':>7} {'answers/q':>9}  skipped"]
    for name, result in built.items():
        counts: Counter = Counter()
        answers: dict[tuple[str, str], int] = defaultdict(int)
        for row in result.rows:
            key = (row["data_source"], row["extra_info"]["split"])
            counts[key] += 1
            answers[key] += len(row["reward_model"]["ground_truth"]["target"])
        for split in result.splits:
            key = (split.dataset, split.split)
            n = counts[key]
            skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(split.skipped.items())) or "-"
            per_q = f"{answers[key] / n:.2f}" if n else "-"
            lines.append(f"{name:<6} {split.dataset:<16} {split.split:<6} {n:>7} {per_q:>9}  {skipped}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        options = PrepOptions(
            input_dir=None if args.from_hub else args.input_dir,
            train_datasets=tuple(parse_dataset_list(args.train_datasets, "--train-datasets")),
            test_datasets=tuple(parse_dataset_list(args.test_datasets, "--test-datasets")),
            strategy=args.strategy,
            protocol=args.protocol,
            num_variants=args.num_variants,
            seed=args.seed,
            max_per_dataset=args.max_per_dataset,
            sample_ratio=args.sample_ratio,
            max_train=args.max_train,
            skip_invalid=args.skip_invalid,
            cache_dir=args.cache_dir,
        )
        options.validate()
        if options.input_dir is not None and not options.input_dir.is_dir():
            raise DataPrepError(f"--input-dir: {options.input_dir} is not a directory")
        plan = {"train": options.train_datasets, "test": options.test_datasets}
        paths = {name: args.output_dir / f"{name}.parquet" for name, datasets in plan.items() if datasets}
        refuse_existing(list(paths.values()), args.overwrite)
        builders = {"train": build_train, "test": build_test}
        built = {name: builders[name](options) for name in paths}
        for name, result in built.items():
            check_not_empty(name, result)
        write_tables({paths[name]: result.rows for name, result in built.items()})
    except DataPrepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_table(built))
    written = ", ".join(f"{paths[name]} ({len(result.rows)} rows)" for name, result in built.items())
    print(f"wrote {written} in {time.perf_counter() - started:.1f} s")
    return 0
