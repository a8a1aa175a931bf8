"""The demo's training stages: the format warm start (verl's SFT trainer) and GRPO (verl's RL trainer).

Both run on the CPU backend, in child processes whose output goes to a log file while a progress bar
follows verl's `step:N` console lines. Both are cached: the warm start under a key of its examples
and settings (`warm_start.finetune`), GRPO under a key of the warm start it starts from and its own
settings, so a second demo trains nothing. The before/after table compares the evaluations' summaries.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
GRPO_RECIPE = REPO_ROOT / "recipes" / "train_tiny_cpu.sh"
GRPO_VERSION = 1  # part of GRPO's cache key: bump it when the stage changes
_STEP = re.compile(r"^step:(\d+) ", re.MULTILINE)

# (label, summary key, format) of the before/after table's columns
TABLE = (
    ("searches/traj", "searches_per_trajectory", "{:.2f}"),
    ("queries/search", "queries_per_search", "{:.2f}"),
    ("squeezed", "squeeze_rate", "{:.0%}"),
    ("format ok", "format_ok_rate", "{:.2f}"),
    ("EM", "em_macro_average", "{:.3f}"),
    ("F1", "f1_macro_average", "{:.3f}"),
)


@contextlib.contextmanager
def step_progress(log: Path, total: int, description: str) -> Iterator[None]:
    """A progress bar over verl's `step:N` lines in `log` while the block runs."""
    from tqdm import tqdm

    done = threading.Event()

    def follow() -> None:
        with tqdm(total=total, desc=description, unit="step", file=sys.stdout) as bar:
            finished = False
            while not finished:
                finished = done.wait(1.0)  # one last look after the run ended
                steps = _STEP.findall(log.read_text(errors="replace")) if log.is_file() else []
                latest = max((int(step) for step in steps), default=0)
                if min(latest, total) > bar.n:
                    bar.update(min(latest, total) - bar.n)
            if completed.is_set():  # the last step's line may come after the log's last read, or not at all
                bar.update(total - bar.n)

    completed = threading.Event()
    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    try:
        yield
        completed.set()
    finally:
        done.set()
        watcher.join()


class TrainingFailed(RuntimeError):
    """A training stage failed; the message names it and its log."""


def build_examples(
    server_url: str, base_model: str, output_dir: Path, settings: list[str], response_length: int
) -> Path:
    """The warm start's examples (TRAIN split only, the teacher through the loop): `warm_start.build`."""
    from expandsearch_verl.warm_start.build import OUTPUT
    from expandsearch_verl.warm_start.build import main as build

    arguments = ["--retriever-url", server_url, "--output-dir", str(output_dir), "--policy-model", base_model]
    arguments += [option for setting in settings for option in ("--set", setting)]
    if build([*arguments, "--response-length", str(response_length)]) != 0:
        raise TrainingFailed(f"the warm start's examples could not be built (see {output_dir})")
    return output_dir / OUTPUT


def warm_start(
    examples: Path, base_dir: str, steps: int, run_dir: Path, cache_dir: Path
) -> tuple[Path, bool]:
    """(the fine-tuned policy, whether it came from the cache): verl's SFT trainer on CPU."""
    from expandsearch_verl.warm_start.finetune import FinetuneSettings, cached_dir, finetune

    settings = FinetuneSettings(steps=steps, batch_size=min(FinetuneSettings.batch_size, _rows(examples)))
    target = cached_dir(examples, base_dir, settings, cache_dir)
    if (target / "config.json").is_file():
        return target, True
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "sft.log"
    with open(log_path, "w") as log, step_progress(log_path, steps, "warm start (SFT)"):
        try:
            return finetune(examples, base_dir, settings, cache_dir, run_dir, log=log), False
        except (RuntimeError, ValueError) as error:
            raise TrainingFailed(f"the warm start failed: {error}") from error


def _rows(examples: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(examples).metadata.num_rows


def grpo(
    policy_dir: Path, server_url: str, squeezer: str, steps: int, run_dir: Path, cache_dir: Path
) -> tuple[Path, bool]:
    """(the policy after `steps` GRPO steps, whether cached): `recipes/train_tiny_cpu.sh` from `policy_dir`,
    searching the server at `server_url`, whose `squeezer` wrote the observations it trained on (so it
    is part of the cache key)."""
    from expandsearch_verl.warm_start.finetune import publish

    key = hashlib.blake2b(
        f"{policy_dir.resolve()}|{squeezer}|{steps}|v{GRPO_VERSION}".encode(), digest_size=8
    ).hexdigest()
    target = cache_dir.expanduser() / "grpo" / f"{policy_dir.name}-{key}"
    if (target / "config.json").is_file():
        return target, True
    run_dir = run_dir.resolve()  # the recipe runs from the repository's root, not the user's directory
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "MODEL_PATH": str(policy_dir.resolve()),
        "RETRIEVER_URLS": server_url,
        "STEPS": str(steps),
        "RUN_DIR": str(run_dir),
        "PYTHON": sys.executable,
        "TEST_FREQ": "-1",  # the demo evaluates the result itself
    }
    # the actor's last checkpoint as an HF directory (verl's hf_model content), no merger needed
    command = ["bash", str(GRPO_RECIPE), "actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]"]
    log_path = run_dir / "grpo.log"
    saved = run_dir / "checkpoints" / f"global_step_{steps}" / "actor" / "huggingface"
    with open(log_path, "w") as log, step_progress(log_path, steps, "GRPO"):
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        if status.returncode != 0:
            raise TrainingFailed(
                f"GRPO through verl failed (exit status {status.returncode}); see {log_path}"
            )
        if not (saved / "config.json").is_file():
            raise TrainingFailed(f"GRPO through verl wrote no policy at {saved}; see {log_path}")
    publish(saved, target, base=policy_dir)  # the warm start's end token goes with the weights
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return target, False


def before_after(summaries: list[tuple[str, dict[str, Any]]]) -> str:
    """The before/after table: one row per policy, the search behaviour and the scores."""
    width = max(len(name) for name, _ in summaries) + 2
    header = f"{'policy':<{width}}" + "".join(f"{label:>16}" for label, _, _ in TABLE)
    rows = [
        f"{name:<{width}}" + "".join(f"{fmt.format(summary.get(key, 0.0)):>16}" for _, key, fmt in TABLE)
        for name, summary in summaries
    ]
    return "\n".join([header, *rows])


def eta(seconds: float) -> str:
    return f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s"


def elapsed(started: float) -> str:
    return f"{time.perf_counter() - started:.0f} s"
