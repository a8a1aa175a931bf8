"""What a training step of verl's real trainer costs on this machine's CPU, with the real HF rollout.

    python benchmarks/bench_train_cpu.py                  # SmolLM2-135M (offline), 2 steps, batch 2 x group 2
    python benchmarks/bench_train_cpu.py --steps 3 -- actor_rollout_ref.actor.optim.lr=1e-5   # hydra overrides last

It runs `recipes/train_tiny_cpu.sh` as a user does (sample data, the demo retriever, GRPO with KL,
validation and a checkpoint at the last step) and prints, per step, verl's own timers: `gen`
(the agent loop: generation and searches), `old_log_prob`, `ref`, `update_actor`, `update_weights`
(the actor's weights into the rollout server), `save_checkpoint`, `testing` (validation) and the
whole step; then the whole process (Ray start, model loading, data, retriever) and the peak memory
of the process tree. Figures go to docs/train-on-cpu.md with this command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
TIMERS = (
    "gen",
    "old_log_prob",
    "ref",
    "update_actor",
    "update_weights",
    "save_checkpoint",
    "testing",
    "step",
)


def tree_rss(root: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--run-dir", default=None, help="default: a temporary directory")
    parser.add_argument("--model-path", default="", help="default: the offline SmolLM2-135M-Instruct")
    parser.add_argument("overrides", nargs="*", help="hydra overrides passed to the recipe, after --")
    args = parser.parse_args(argv)

    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="bench_train_cpu_"))
    metrics_file = run_dir / "metrics.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "STEPS": str(args.steps),
        "RUN_DIR": str(run_dir),
        "MODEL_PATH": args.model_path,
        "LOGGER": "[console,file]",
        "VERL_FILE_LOGGER_PATH": str(metrics_file),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", str(REPO / "recipes/train_tiny_cpu.sh"), *args.overrides],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0]

    def watch() -> None:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(root))
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()
    log = process.communicate()[0]
    wall = time.perf_counter() - started
    if process.returncode != 0:
        print(log[-8000:], file=sys.stderr)
        print(f"the recipe failed (exit {process.returncode}); run dir {run_dir}", file=sys.stderr)
        return 1

    steps: dict[int, dict[str, float]] = {}
    for line in metrics_file.read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["data"])
    cpu = psutil.cpu_count(logical=True)
    memory = psutil.virtual_memory().total / 2**30
    print(f"verl {_verl_version()} trainer on CPU ({cpu} logical cores, {memory:.0f} GiB), run dir {run_dir}")
    print("step  " + "".join(f"{name:>16}" for name in TIMERS) + "   response tokens (mean)")
    for step, metrics in sorted(steps.items()):
        row = "".join(
            f"{metrics[f'timing_s/{name}']:>15.1f}s" if f"timing_s/{name}" in metrics else f"{'-':>16}"
            for name in TIMERS
        )
        print(f"{step:<6}{row}   {metrics.get('response_length/mean', float('nan')):.0f}")
    print(f"whole process (data, retriever, Ray, models, {len(steps)} steps): {wall:.0f} s")
    print(f"peak resident memory of the process tree: {peak[0] / 2**30:.1f} GiB")
    return 0


def _verl_version() -> str:
    import verl

    return verl.__version__


if __name__ == "__main__":
    sys.exit(main())
