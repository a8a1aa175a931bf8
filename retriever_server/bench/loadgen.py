"""Closed-loop load generator of the benchmark: N clients, each sending its next request once the last is answered.

It shares the CPU with the server it measures, so it is lean on purpose: aiohttp (about 0.25 ms of
CPU per /search round trip here, against httpx's 6 ms at 64 connections and 14 ms at 256, which was
a third of the machine), bodies serialised once, responses read as bytes and never parsed.

With a `duration`, throughput and latency count only the requests that complete inside a steady
window, which opens once every client has had one answer and lasts `duration` or three such round
trips, whichever is longer: neither the ramp-up nor the drain of the last in-flight requests
(seconds at 256 clients) dilutes the figures, and a window holds several of the bursts in which big
batches answer. Over the window it also reports the CPU used by this process and, when the server's
pid is known, by the server's event-loop thread and by its other (engine) threads, per request; and,
from the server's /metrics, the cache hit rate, the share of the queries received that the engine
computed (`computed_rate`: the rest were cache hits or joined an identical query), the mean batch and
the fraction of the window the engine was computing (`engine_busy`: below 1, the engine waited for
work).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
import numpy as np
import psutil

HEADERS = {"Content-Type": "application/json"}
COUNTERS = (
    "retriever_cache_hits_total",
    "retriever_cache_misses_total",
    "retriever_batch_queries_sum",
    "retriever_batch_queries_count",
    "retriever_engine_seconds_sum",
    "retriever_queries_total",
)


@dataclass
class CpuSnapshot:
    """CPU seconds of this process, and of the server's event-loop thread and its other threads."""

    client: float
    server_loop: float = 0.0
    server_other: float = 0.0

    @classmethod
    def take(cls, server: psutil.Process | None) -> CpuSnapshot:
        mine = psutil.Process().cpu_times()
        snapshot = cls(client=mine.user + mine.system)
        if server is not None:
            for thread in server.threads():
                seconds = thread.user_time + thread.system_time
                if thread.id == server.pid:  # the main thread runs the event loop
                    snapshot.server_loop += seconds
                else:  # the engine thread, torch / faiss / tokenizer workers
                    snapshot.server_other += seconds
        return snapshot


def cpu_per_request(start: CpuSnapshot, end: CpuSnapshot, requests: int, seconds: float) -> dict[str, float]:
    """Milliseconds of CPU per request for each part, and cores busy on average."""
    parts = {
        "client": end.client - start.client,
        "server_loop": end.server_loop - start.server_loop,
        "server_engine": end.server_other - start.server_other,
    }
    out = {f"{name}_cpu_ms": used * 1e3 / max(1, requests) for name, used in parts.items()}
    out["cores_busy"] = sum(parts.values()) / seconds
    return out


async def _counter(session: aiohttp.ClientSession, url: str, names: tuple[str, ...]) -> list[float]:
    """Current values of Prometheus counters on the server's /metrics, summed over their labels."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    values = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        name = name.partition("{")[0]
        if name in values:
            values[name] += float(value)
    return list(values.values())


async def drive(
    url: str,
    bodies: list[dict],
    concurrency: int,
    duration: float | None,
    server_pid: int | None = None,
    route: str = "/search",
) -> dict:
    """`concurrency` clients send `bodies` in order; with `duration`, cycle them and measure a steady window.

    Without `duration` every body is sent once and the whole run is measured (the GRPO workload).
    """
    payloads = [(json.dumps(body).encode(), len(body["queries"])) for body in bodies]
    server = psutil.Process(server_pid) if server_pid else None
    done: list[tuple[float, float, int]] = []  # (finished, latency, n_queries)
    cursor = 0
    stop = False
    steady = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=600)
    # /metrics gets a session of its own: in the clients' pool it would wait for a free connection forever
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession(timeout=timeout) as metrics_session,
    ):

        async def client():
            nonlocal cursor
            while not stop and (duration is not None or cursor < len(payloads)):
                payload, n_queries = payloads[cursor % len(payloads)]
                cursor += 1
                sent = time.perf_counter()
                async with session.post(url + route, data=payload, headers=HEADERS) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(
                            f"{route} answered {response.status}: {(await response.text())[:500]}"
                        )
                finished = time.perf_counter()
                done.append((finished, finished - sent, n_queries))
                if len(done) >= concurrency:
                    steady.set()

        async def snapshot() -> tuple[float, CpuSnapshot, np.ndarray]:
            return (
                time.perf_counter(),
                CpuSnapshot.take(server),
                np.array(await _counter(metrics_session, url, COUNTERS)),
            )

        started = time.perf_counter()
        if duration is None:  # the whole run is the window
            first = await snapshot()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            last = await snapshot()
        else:
            clients = [asyncio.ensure_future(client()) for _ in range(concurrency)]
            await steady.wait()
            first = await snapshot()
            # at least 3 round trips of every client: big batches answer in bursts
            await asyncio.sleep(max(duration, 3 * (first[0] - started)))
            stop = True
            last = await snapshot()
            await asyncio.gather(*clients)  # the drain: answers after the window are not counted
    (opened, cpu0, counters0), (closed, cpu1, counters1) = first, last
    hits, misses, batch_queries, batches, engine_seconds, queries = counters1 - counters0
    counted = (
        [(latency, n) for finished, latency, n in done if opened <= finished <= closed]
        if duration
        else [(latency, n) for _, latency, n in done]
    )
    seconds = closed - opened
    latencies = np.array([latency for latency, _ in counted]) * 1e3
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if len(latencies) else (float("nan"),) * 3
    return {
        "concurrency": concurrency,
        "requests": len(counted),
        "seconds": seconds,
        "requests_per_s": len(counted) / seconds,
        "queries_per_s": sum(n for _, n in counted) / seconds,
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "bodies_repeated": max(0, cursor - len(payloads)),  # a cycling run sent these bodies twice
        "cache_hit_rate": float(hits / max(1.0, hits + misses)),
        "computed_rate": float(batch_queries / max(1.0, queries)),
        "mean_batch_queries": float(batch_queries / max(1.0, batches)),
        "engine_busy": float(engine_seconds / seconds),
        **cpu_per_request(cpu0, cpu1, len(counted), seconds),
    }
