"""The bench's first table: the plain Search-R1-shaped server (`baseline`) against ours, side by side.

Both serve the same corpus, index and encoder; ours runs with its default settings (batching on,
cache on: every measurement sends requests never sent before, so the cache cannot hit, as the
table's hit-rate column shows). The baseline gets Search-R1's environment (no OMP_WAIT_POLICY).
Each round measures every level on both servers back to back, alternating which goes first, so the
shared machine's noise falls on both alike; the ratios are per round and their median is printed.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from retriever_server.bench.loadgen import drive

LEVELS = (1, 16, 64)
HEADER = (
    "| round | clients | baseline req/s | ours req/s | ours / baseline | p50 ms baseline / ours | "
    "p99 ms baseline / ours | ours p99 / baseline p99 | ours cache hits |\n|---|---|---|---|---|---|---|---|---|"
)


def row(round_no: int, level: int, base: dict, ours: dict) -> str:
    return (
        f"| {round_no} | {level} | {base['requests_per_s']:.1f} | {ours['requests_per_s']:.1f} | "
        f"{ours['requests_per_s'] / base['requests_per_s']:.2f}x | {base['p50_ms']:.0f} / {ours['p50_ms']:.0f} | "
        f"{base['p99_ms']:.0f} / {ours['p99_ms']:.0f} | {ours['p99_ms'] / base['p99_ms']:.2f} | "
        f"{ours['cache_hit_rate']:.0%} |"
    )


def per_run(duration: float) -> int:
    """Fresh bodies for one measurement: enough for ~300 requests/s over the window, so none repeats."""
    return max(200, int(duration * 300))


def run(
    corpus: Path, index: Path, encoder: dict, bodies: list[dict], rounds: int, duration: float
) -> list[dict]:
    """Print the table (then a median line per level) and return every measurement."""
    from retriever_server.bench.retriever import serve_args
    from retriever_server.process import ServerProcess
    from retriever_server.settings import Settings

    defaults = Settings()
    ours_args = serve_args(corpus, index, encoder, defaults.cache_size, True, defaults.max_batch_queries)
    base_args = ["--corpus", str(corpus), "--index", str(index), "--encoder", encoder["model"]]
    servers = {
        "baseline": ServerProcess(
            base_args, wait=False, module=("retriever_server.bench.baseline",), unset=("OMP_WAIT_POLICY",)
        ),
        "ours": ServerProcess(ours_args, wait=False),
    }
    routes = {"baseline": "/retrieve", "ours": "/search"}
    fresh = iter(
        range(0, len(bodies), per_run(duration))
    )  # fresh requests for every measurement (ours caches)
    measured: list[dict] = []
    print(HEADER, flush=True)
    try:
        for server in servers.values():
            server.wait_ready()
        for label, server in servers.items():  # warm-up
            asyncio.run(drive(server.url, bodies[-200:], 4, None, route=routes[label]))
        for round_no in range(1, rounds + 1):
            for level in LEVELS:
                start = next(fresh)
                order = list(servers) if (round_no + level) % 2 else list(reversed(servers))
                got = {
                    label: asyncio.run(
                        drive(
                            servers[label].url,
                            bodies[start : start + per_run(duration)],
                            level,
                            duration,
                            servers[label].process.pid,
                            route=routes[label],
                        )
                    )
                    for label in order
                }
                measured.append({"round": round_no, "clients": level, **got})
                print(row(round_no, level, got["baseline"], got["ours"]), flush=True)
                if got["ours"]["bodies_repeated"]:
                    print(
                        f"note: {got['ours']['bodies_repeated']} requests repeated a body of this measurement "
                        "(ours may have answered them from its cache): a larger --passages gives more fresh bodies",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.stop()
    for level in LEVELS:
        rows = [m for m in measured if m["clients"] == level]
        ratios = [m["ours"]["requests_per_s"] / m["baseline"]["requests_per_s"] for m in rows]
        p99 = [m["ours"]["p99_ms"] / m["baseline"]["p99_ms"] for m in rows]
        print(
            f"ours/baseline at {level} clients over {len(rows)} rounds: requests/s median {statistics.median(ratios):.2f}x "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}), p99 median {statistics.median(p99):.2f} "
            f"(range {min(p99):.2f}-{max(p99):.2f})",
            flush=True,
        )
    return measured
