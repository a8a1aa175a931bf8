"""The event loop's cost of one `SearchService.lookup`, a git ref against this checkout, in process.

    python benchmarks/bench_retriever_lookup.py [--ref main] [--rounds 3]

Over HTTP the event loop's share of a request (~0.7 ms) moves by more than a few microseconds
between neighbouring rows, so a change to the lookup path (cache, batcher, de-duplication) is
timed here without HTTP: 64 concurrent coroutines send /search-shaped lookups (3 queries, topk 10)
through the real service and micro-batcher to an engine that answers at once, and the CPU of the
whole process per lookup is printed. Two workloads: distinct queries with the cache off, and
GRPO-like copies (each lookup sent 5 times, shuffled) with the cache on. Each round runs the ref's
tree (git archive) and this checkout in child processes, alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("distinct", "grpo")


class InstantRetriever:
    """The Retriever protocol with no engine work: the lookup path's own cost is what remains."""

    name, identity, size = "dense", "instant", 1000

    def search(self, queries: list[str], k: int):
        from retriever_server.index.hits import SearchResults

        positions = np.arange(len(queries) * k).reshape(len(queries), k) % self.size
        return SearchResults.from_index(positions, np.ones(positions.shape, np.float32), {"encode": 0.0})


async def measure(workload: str, n: int = 20_000) -> float:
    """CPU microseconds of this process per lookup."""
    from retriever_server.metrics import ServerMetrics
    from retriever_server.search.service import SearchService
    from retriever_server.settings import Settings

    cache_size = 0 if workload == "distinct" else 65536
    settings = Settings(corpus="unused", dense_index="unused", cache_size=cache_size)
    service = SearchService(settings, None, {"dense": InstantRetriever()}, None, ServerMetrics())
    service.start()
    if workload == "distinct":
        bodies = [[f"q{i} a", f"q{i} b", f"q{i} c"] for i in range(n)]
    else:
        bodies = [[f"g{i} a", f"g{i} b", f"g{i} c"] for i in range(n // 5)] * 5
        random.Random(0).shuffle(bodies)
    queue = iter(bodies)

    async def client():
        for body in queue:
            await service.lookup(body, 10, "dense")

    cpu = time.process_time()
    await asyncio.gather(*(client() for _ in range(64)))
    cpu = time.process_time() - cpu
    for batcher in service.batchers.values():
        await batcher.stop()
    return cpu * 1e6 / len(bodies)


def run_in(source: Path, workload: str) -> float:
    """`measure` in a child process importing `retriever_server` from `source`."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", workload],
        env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="main", help="git ref of the 'before' tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        print(uvloop.run(measure(args.child)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", args.ref], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sources = {f"before ({args.ref})": Path(tmp), "after (this checkout)": ROOT}
        print("| round | workload | " + " | ".join(f"{label} us/lookup" for label in sources) + " |")
        print("|---|---|" + "---|" * len(sources))
        costs = {workload: {label: [] for label in sources} for workload in WORKLOADS}
        for round_no in range(1, args.rounds + 1):
            order = list(sources.items()) if round_no % 2 else list(sources.items())[::-1]
            for workload in WORKLOADS:
                for label, source in order:
                    costs[workload][label].append(run_in(source, workload))
                cells = " | ".join(f"{costs[workload][label][-1]:.1f}" for label in sources)
                print(f"| {round_no} | {workload} | {cells} |", flush=True)
        for workload, by_label in costs.items():
            medians = ", ".join(
                f"{label} {statistics.median(values):.1f}" for label, values in by_label.items()
            )
            print(f"{workload}: median us/lookup, {medians}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
