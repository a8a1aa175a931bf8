"""Time `expandsearch doctor` on a full-size run and print one line per measurement.

    python benchmarks/bench_doctor.py [--rows 169615]

The training file has the size of NQ + HotpotQA train (synthetic questions shaped like FlashRAG's,
converted by `python -m data_prep`); the model is a tiny local Qwen2 with a chat template; the
overrides are the PPO recipe's own (its dry run). Measured: the data checks alone, in process
(reading the needed columns, prompt lengths for every row, the longest prompts tokenized), and the
whole command as a recipe runs it, without the network and the GPU-node checks.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]

from bench_data_prep import write_split  # noqa: E402  (the same synthetic FlashRAG rows)
from conftest import build_chat_model  # noqa: E402  (the tests' tiny chat model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows", type=int, default=169_615, help="training rows (NQ + HotpotQA train: 169,615)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        rng = random.Random(0)
        write_split(root / "flashrag" / "nq" / "train.jsonl", args.rows // 2, rng)
        write_split(root / "flashrag" / "hotpotqa" / "train.jsonl", args.rows - args.rows // 2, rng)
        for name in ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle"):
            write_split(
                root
                / "flashrag"
                / name
                / ("dev.jsonl" if name in ("hotpotqa", "2wikimultihopqa", "musique") else "test.jsonl"),
                500,
                rng,
            )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "data_prep",
                "--input-dir",
                str(root / "flashrag"),
                "--output-dir",
                str(root / "data"),
            ],
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        model = build_chat_model(root / "model")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DRY_RUN": "1",
            "MODEL_PATH": str(model),
            "DATA_DIR": str(root / "data"),
            "RUN_DIR": str(root / "run"),
        }
        recipe = REPO / "recipes" / "train_expandsearch_ppo_qwen2.5-3b.sh"
        overrides = subprocess.run(
            ["bash", str(recipe)], env=env, check=True, capture_output=True, text=True
        ).stdout.splitlines()[3:]

        from expandsearch_verl.doctor import CHECKS, Preflight

        ctx = Preflight(overrides, skip_network=True)
        timings = {}
        for name, check in CHECKS:
            if name in ("config", "agent-loop", "model", "train-data", "val-data"):
                started = time.perf_counter()
                results = check(ctx)
                timings[name] = time.perf_counter() - started
                assert all(result.status != "fail" for result in results), results
        print(f"train-data check, {args.rows:,} rows: {timings['train-data']:.2f} s")
        print(f"val-data check, 3,500 rows: {timings['val-data']:.2f} s")
        started = time.perf_counter()
        command = [
            "expandsearch",
            "doctor",
            "--skip-network",
            "--skip",
            "gpus",
            "--skip",
            "engine",
            "--skip",
            "plugin",
            *overrides,
        ]
        subprocess.run(command, env={**env, "DRY_RUN": "0"}, check=True, capture_output=True)
        print(
            f"expandsearch doctor, whole command (interpreter, verl import, every check): {time.perf_counter() - started:.1f} s"
        )


if __name__ == "__main__":
    main()
