"""Convert NQ + HotpotQA train at full size (synthetic rows) and print the time and rows/s.

    python benchmarks/bench_data_prep.py [--rows-nq 79168] [--rows-hotpotqa 90447]

The row counts default to the FlashRAG train splits (169,615 rows, Search-R1's training set). The
rows are synthetic but shaped like the real ones (question length, 1-3 answers, metadata). The
timing covers the whole command as a user runs it: interpreter start, imports, reading and
validating JSONL, shuffling, mapping to rows, writing parquet.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "the",
    "of",
    "in",
    "which",
    "who",
    "what",
    "when",
    "river",
    "city",
    "film",
    "album",
    "king",
    "war",
    "year",
    "born",
    "capital",
    "team",
    "first",
]


def write_split(path: Path, rows: int, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for i in range(rows):
            question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))) + "?"
            answers = [f"answer {rng.randint(0, 10**6)}" for _ in range(rng.randint(1, 3))]
            row = {
                "id": f"train_{i}",
                "question": question,
                "golden_answers": answers,
                "metadata": {"type": "x"},
            }
            out.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-nq", type=int, default=79_168)
    parser.add_argument("--rows-hotpotqa", type=int, default=90_447)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "flashrag", Path(tmp) / "out"
        write_split(src / "nq" / "train.jsonl", args.rows_nq, rng)
        write_split(src / "hotpotqa" / "train.jsonl", args.rows_hotpotqa, rng)
        command = [
            sys.executable,
            "-m",
            "data_prep",
            "--input-dir",
            str(src),
            "--output-dir",
            str(out),
            "--test-datasets",
            "",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        size_mb = (out / "train.parquet").stat().st_size / 1e6
    rows = args.rows_nq + args.rows_hotpotqa
    print(
        f"data_prep: {rows} rows in {seconds:.2f} s end to end = {rows / seconds:,.0f} rows/s; "
        f"train.parquet {size_mb:.1f} MB"
    )


if __name__ == "__main__":
    main()
