"""The warm start's compute dtype on this CPU: verl's SFT trainer in bf16 and in fp32, alternated.

    python benchmarks/bench_warm_start_precision.py outputs/demo/train/examples/warm_start.parquet \
        [--steps 4] [--rounds 2]

Each run is `python -m expandsearch_verl.warm_start.finetune` (a child process, no cache), so a run's
wall time includes the trainer's start-up; the per-step times are verl's progress-bar rates. Prints a
row per run (wall, seconds per step, losses) and the median fp32 / bf16 ratio of the wall times.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRECISIONS = ("bf16", "fp32")
_RATE = re.compile(r"([0-9.]+)s/it")
_LOSS = re.compile(r"train/loss:([0-9.]+)")


def run(examples: Path, precision: str, steps: int, scratch: Path) -> tuple[float, list[float], list[float]]:
    """(wall seconds, seconds per step, losses) of one fine-tune."""
    command = [
        sys.executable, "-m", "expandsearch_verl.warm_start.finetune", str(examples), "--steps", str(steps),
        "--precision", precision, "--run-dir", str(scratch / "run"), "--cache-dir", str(scratch / "cache"),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"{precision}: the fine-tune failed (exit {done.returncode}):\n{log[-3000:]}")
    return wall, [float(rate) for rate in _RATE.findall(log)], [float(loss) for loss in _LOSS.findall(log)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("examples", type=Path, help="warm_start.parquet (warm_start.build, or the demo's)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    print(f"{'round':>5}  {'dtype':5}  {'wall s':>7}  {'s/step':>20}  losses")
    for round_ in range(1, args.rounds + 1):
        order = PRECISIONS if round_ % 2 else PRECISIONS[::-1]
        for precision in order:
            with tempfile.TemporaryDirectory() as scratch:
                wall, rates, losses = run(args.examples, precision, args.steps, Path(scratch))
            walls[precision].append(wall)
            steps = " ".join(f"{rate:.1f}" for rate in rates)
            print(
                f"{round_:>5}  {precision:5}  {wall:7.1f}  {steps:>20}  {' '.join(f'{x:.3f}' for x in losses)}"
            )
    ratio = statistics.median(walls["fp32"]) / statistics.median(walls["bf16"])
    print(f"fp32 / bf16 wall time, median over {args.rounds} rounds: {ratio:.2f}x")


if __name__ == "__main__":
    main()
