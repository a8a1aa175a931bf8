"""The retriever server before and after a change, side by side in one run: a git ref against this checkout.

    python benchmarks/bench_retriever_before_after.py [--ref main] [--concurrency 1,64,256] [--rounds 2]
        [--cache-size N] [--grpo-requests N] [--no-loadgen-table]

Both serve the `bench` command's corpus (100k synthetic passages, a flat index of random unit
vectors, MiniLM queries) with batching on and the cache off (`--cache-size`: another size, e.g. the
server's default), the 'before' one with the dependencies its ref's setup.py names, and the same
lean load generator (`retriever_server.bench.loadgen`) drives them alternately, level by level,
which one goes first alternating by round, each pair with requests never sent before, so the shared
machine's noise hits both alike; every row says where the CPU went (ms per request) and which
share of the queries received the engine computed. With `--grpo-requests N`, then the `bench`
command's GRPO-like workload (N distinct requests, each sent by 5 rollouts, 64 clients), once per
round on each. Then (unless `--no-loadgen-table`) the load generators themselves: httpx (what
`bench` used before) and aiohttp (`loadgen`) drive the new server at each level, and their own CPU
per request is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retriever_server.bench import loadgen  # noqa: E402
from retriever_server.bench import retriever as bench  # noqa: E402
from retriever_server.process import ServerProcess  # noqa: E402

OPTIONAL_SPEEDUPS = ("uvloop", "httptools")  # uvicorn uses them whenever they are importable


def start_at_ref(ref: str, workdir: Path, serve_args: list[str]) -> ServerProcess:
    """`python -m retriever_server serve` from the tree of `ref` (git archive), not from this checkout.

    It runs with the dependencies its own setup.py names: uvloop and httptools, installed here for
    this checkout, are made unimportable for it when it does not name them, as on a fresh install.
    """
    source = workdir / f"src-{ref.replace('/', '_')}"
    source.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    shims = workdir / "not-installed"
    shims.mkdir(exist_ok=True)
    setup = (source / "setup.py").read_text()
    for module in OPTIONAL_SPEEDUPS:
        if f'"{module}' not in setup:
            (shims / f"{module}.py").write_text(
                f"raise ImportError('{module} is not a dependency of {ref}')\n"
            )
    return ServerProcess(
        serve_args, wait=False, cwd=source, env={"PYTHONPATH": f"{shims}{os.pathsep}{source}"}
    )


async def httpx_client_cpu(url: str, bodies: list[dict], concurrency: int, seconds: float) -> dict:
    """The closed loop `bench` ran before, on httpx: requests/s and this process's CPU per request."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done, stop_at = 0, time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        cpu, started = time.process_time(), time.perf_counter()

        async def worker(offset: int):
            nonlocal done
            while time.perf_counter() < stop_at:
                (await client.post("/search", json=bodies[(offset + done) % len(bodies)])).raise_for_status()
                done += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"requests_per_s": done / elapsed, "client_cpu_ms": cpu * 1e3 / max(1, done)}


def alternated(servers: dict[str, ServerProcess], round_no: int) -> list[tuple[str, ServerProcess]]:
    """Before then after in even rounds, after then before in odd ones."""
    order = list(servers.items())
    return order if round_no % 2 == 0 else order[::-1]


def row_cells(r: dict) -> str:
    """The cells after throughput: latency, batch, cache, the engine's share of the queries, CPU."""
    return (
        f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_batch_queries']:.0f} | {r['cache_hit_rate']:.0%} | "
        f"{r['computed_rate']:.0%} | {r['client_cpu_ms']:.2f} / {r['server_loop_cpu_ms']:.2f} / "
        f"{r['server_engine_cpu_ms']:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="main", help="git ref of the 'before' server")
    parser.add_argument("--concurrency", default="1,64,256")
    parser.add_argument("--rounds", type=int, default=2, help="before/after pairs per level")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-batch-queries", type=int, default=256)
    parser.add_argument("--cache-size", type=int, default=0, help="both servers' --cache-size (0: off)")
    parser.add_argument(
        "--grpo-requests",
        type=int,
        default=0,
        help="distinct requests of the GRPO-like workload (0 skips it)",
    )
    parser.add_argument(
        "--no-loadgen-table", action="store_true", help="skip the httpx against aiohttp load generator table"
    )
    parser.add_argument("--workdir", default=None, help="default: <cache dir>/bench (shared with `bench`)")
    args = parser.parse_args()
    from retriever_server.settings import default_cache_dir

    workdir = Path(args.workdir or Path(default_cache_dir()) / "bench")
    corpus, index, encoder = bench.prepare(workdir, 100_000)
    serve_args = bench.serve_args(corpus, index, encoder, args.cache_size, True, args.max_batch_queries)
    levels = [int(c) for c in args.concurrency.split(",")]
    per_run = int(args.duration * 250)  # requests never sent before for every pair (a server may cache)
    bodies = bench.distinct_bodies(100_000, max(20_000, 200 + len(levels) * args.rounds * per_run), seed=4)
    fresh = iter(range(200, len(bodies), per_run))
    with tempfile.TemporaryDirectory() as tmp:
        servers = {
            f"before ({args.ref})": start_at_ref(args.ref, Path(tmp), serve_args),
            "after (this checkout)": ServerProcess(serve_args, wait=False),
        }
        try:
            for server in servers.values():
                server.wait_ready()
                asyncio.run(loadgen.drive(server.url, bodies[:200], 16, None))  # warm-up
            print(
                "| server | clients | queries/s | p50 ms | p99 ms | queries/batch | cache hits | computed by "
                "the engine | CPU ms/request: load gen / event loop / engine |\n|---|---|---|---|---|---|---|---|---|",
                flush=True,
            )
            for level in levels:
                for round_no in range(args.rounds):
                    start = next(fresh)
                    for label, server in alternated(servers, round_no):
                        r = asyncio.run(
                            loadgen.drive(
                                server.url,
                                bodies[start : start + per_run],
                                level,
                                args.duration,
                                server.process.pid,
                            )
                        )
                        print(f"| {label} | {level} | {r['queries_per_s']:.0f} | {row_cells(r)}", flush=True)
            if args.grpo_requests:
                print(
                    "\nGRPO-like workload (each request sent by 5 rollouts, 64 clients):\n| server | requests/s | "
                    "p50 ms | p99 ms | queries/batch | cache hits | computed by the engine | CPU ms/request: load "
                    "gen / event loop / engine |\n|---|---|---|---|---|---|---|---|",
                    flush=True,
                )
                for round_no in range(args.rounds):
                    grpo = bench.grpo_bodies(100_000, args.grpo_requests, seed=50 + round_no)
                    for label, server in alternated(servers, round_no):
                        r = asyncio.run(loadgen.drive(server.url, grpo, 64, None, server.process.pid))
                        print(f"| {label} | {r['requests_per_s']:.1f} | {row_cells(r)}", flush=True)
            if args.no_loadgen_table:
                return 0
            after = servers["after (this checkout)"]
            print("\n| load generator | clients | requests/s | client CPU ms/request |\n|---|---|---|---|")
            for level in levels:
                for name, measure in (("httpx (before)", httpx_client_cpu), ("aiohttp (loadgen)", None)):
                    r = (
                        asyncio.run(measure(after.url, bodies, level, args.duration))
                        if measure
                        else asyncio.run(loadgen.drive(after.url, bodies, level, args.duration))
                    )
                    print(
                        f"| {name} | {level} | {r['requests_per_s']:.1f} | {r['client_cpu_ms']:.2f} |",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
