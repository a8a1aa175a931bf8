"""`expandsearch eval` benchmarks: its own overhead per trajectory, and the SmolLM2 policy's throughput.

    python benchmarks/bench_eval.py                      # both parts, about 3-5 min on 2 cores
    python benchmarks/bench_eval.py --skip-smollm2       # the overhead part only

Both parts run the real `expandsearch eval` in this process against a real
`retriever_server serve --demo` child (dense + BM25 over the sample corpus, the extractive squeezer,
its result cache off so every search is searched), on data_prep's parquet of the shipped samples,
and read the figures from the run's `summary.json` (`this_run`: evaluation wall time, setup excluded).

1. Overhead: the policy is the scripted OpenAI-protocol double (`retriever_server/scripted/policy_server.py`, a
   child process answering at once: one search, then an answer), so the wall time per trajectory is
   the evaluation's own cost plus two `/completions` round trips and one `/search`, at concurrency 1
   (one after another) and 16 (one batch in flight). SmolLM2's tokenizer, as in the demo.
2. Throughput: SmolLM2-135M-Instruct in this process (`--policy-model smollm2`, batched `generate`),
   the demo's 7 questions (one per dataset), `--response-length 128`, trajectories/s and the
   generate-call p50.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from data_prep.cli import main as data_prep
from expandsearch_verl.cli import main as expandsearch
from retriever_server.models import hf_source
from retriever_server.process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def scripted_policy(tokenizer_dir: str) -> Iterator[str]:
    """The scripted policy as a child process; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "retriever_server.scripted.policy_server"]
    process = subprocess.Popen([*command, "--tokenizer", tokenizer_dir, "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError("the scripted policy exited at start")
            try:
                httpx.get(f"{url}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the scripted policy did not start in 120 s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def prepare(output: Path, per_dataset: int) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        status = data_prep([
            "--output-dir", str(output), "--train-datasets", "", "--max-per-dataset", str(per_dataset),
            "--overwrite",
        ])  # fmt: skip
    if status != 0:
        raise RuntimeError(f"data_prep failed ({status})")
    return output / "test.parquet"


def evaluate(parquet: Path, output: Path, policy: list[str], retriever: str, options: list[str]) -> dict:
    """One `expandsearch eval` run (its table silenced); its summary.json."""
    with contextlib.redirect_stdout(io.StringIO()):
        status = expandsearch([
            "eval", str(parquet), *policy, "--retriever-url", retriever, "--output-dir", str(output),
            "--overwrite", "--set", "topk=3", "--set", "max_observation_tokens=192", *options,
        ])  # fmt: skip
    if status != 0:
        raise RuntimeError(f"expandsearch eval failed ({status})")
    return json.loads((output / "summary.json").read_text())


def overhead(work: Path, retriever: str, per_dataset: int) -> None:
    parquet = prepare(work / "overhead-data", per_dataset)
    tokenizer_dir = hf_source("smollm2")
    print(f"\n1. eval overhead, scripted policy double, {per_dataset * 7} trajectories")
    print(
        "| concurrency | wall ms / trajectory | trajectory p50 ms | search call mean ms | searches / trajectory |"
    )
    print("|---|---|---|---|---|")
    with scripted_policy(tokenizer_dir) as url:
        for concurrency in (1, 16):
            options = ["--concurrency", str(concurrency), "--response-length", "512"]
            summary = evaluate(
                parquet, work / f"overhead-{concurrency}", ["--policy-url", url], retriever, options
            )
            run, latency = summary["this_run"], summary["latency_ms"]
            print(
                f"| {concurrency} | {1000 * run['wall_s'] / run['trajectories']:.1f} "
                f"| {latency['trajectory']['p50']:.1f} | {latency['search_call_mean']:.1f} "
                f"| {summary['searches_per_trajectory']:.2f} |",
                flush=True,
            )


def smollm2(work: Path, retriever: str) -> None:
    parquet = prepare(work / "smollm2-data", 1)
    options = [
        "--concurrency",
        "16",
        "--batch-size",
        "16",
        "--response-length",
        "128",
        "--prompt-length",
        "1024",
    ]
    summary = evaluate(parquet, work / "smollm2", ["--policy-model", "smollm2"], retriever, options)
    run, latency = summary["this_run"], summary["latency_ms"]
    print(
        f"\n2. SmolLM2-135M policy, {run['trajectories']} trajectories, budget 128 tokens, extractive squeezer"
    )
    print("| trajectories/s | eval wall s | generate-call p50 ms | searches / trajectory |")
    print("|---|---|---|---|")
    print(
        f"| {run['trajectories_per_s']:.3f} | {run['wall_s']:.1f} | {latency['generate_call']['p50']:.0f} "
        f"| {summary['searches_per_trajectory']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-dataset", type=int, default=4, help="questions per dataset for part 1")
    parser.add_argument("--skip-smollm2", action="store_true", help="part 1 only")
    args = parser.parse_args()
    hf_source("smollm2")  # the GGUF conversion, once (cached), outside the timed runs
    serve = ["--demo", "--retriever", "dense,bm25", "--squeezer", "extractive", "--cache-size", "0"]
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(serve, timeout_s=600) as server:
        overhead(Path(tmp), server.url, args.per_dataset)
        if not args.skip_smollm2:
            smollm2(Path(tmp), server.url)


if __name__ == "__main__":
    main()
