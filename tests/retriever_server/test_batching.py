"""The micro-batcher on its own, with a recording retriever (the Retriever protocol, no model)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retriever_server.batching import MicroBatcher
from retriever_server.hits import SearchResults


class RecordingRetriever:
    """Position j of query q is hash-derived; records every batch and the thread that ran it."""

    name, identity, size = "fake", "fake", 1000

    def __init__(self, fail_on: str | None = None, gate: threading.Event | None = None):
        self.calls: list[tuple[list[str], int]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.gate = gate  # when given, every call waits for it

    def search(self, queries: list[str], k: int) -> SearchResults:
        self.calls.append((list(queries), k))
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_on in queries:
            raise RuntimeError("engine exploded")
        positions = np.array([[sum(map(ord, q)) * 10 + j for j in range(k)] for q in queries])
        return SearchResults.from_index(
            positions, -positions.astype(np.float32), {"encode": 1.0, "search": 2.0}
        )


async def _run(batcher: MicroBatcher, requests: list[tuple[list[str], int]]):
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.search(q, k) for q, k in requests), return_exceptions=True)
    finally:
        await batcher.stop()


async def test_concurrent_requests_share_one_batch_and_duplicates_are_computed_once():
    retriever = RecordingRetriever()
    with ThreadPoolExecutor(1, thread_name_prefix="engine") as engine:
        batcher = MicroBatcher(retriever, engine, max_batch_queries=100, max_wait_ms=50)
        results = await _run(batcher, [(["a", "b"], 3), (["b", "c"], 5), (["a"], 1)])
    assert retriever.calls == [(["a", "b", "c"], 5)]  # one engine call, largest k, each query once
    assert retriever.threads == {"engine_0"}
    alone = RecordingRetriever()
    for (queries, k), got in zip([(["a", "b"], 3), (["b", "c"], 5), (["a"], 1)], results, strict=True):
        expected = alone.search(queries, k)
        assert got.positions.tolist() == expected.positions.tolist() and got.positions.shape == (
            len(queries),
            k,
        )


async def test_batch_size_cap_and_batching_off():
    retriever = RecordingRetriever()
    with ThreadPoolExecutor(1) as engine:
        await _run(
            MicroBatcher(retriever, engine, max_batch_queries=4, max_wait_ms=50),
            [([f"q{i}", f"r{i}"], 2) for i in range(6)],
        )
    assert [len(queries) for queries, _ in retriever.calls] == [4, 4, 4]
    off = RecordingRetriever()
    with ThreadPoolExecutor(1) as engine:
        await _run(MicroBatcher(off, engine, enabled=False), [([f"q{i}"], 2) for i in range(5)])
    assert [queries for queries, _ in off.calls] == [[f"q{i}"] for i in range(5)]


async def test_an_engine_failure_reaches_its_batch_only():
    retriever = RecordingRetriever(fail_on="boom")
    with ThreadPoolExecutor(1) as engine:
        batcher = MicroBatcher(retriever, engine, max_wait_ms=20)
        batcher.start()
        failed = await asyncio.gather(
            batcher.search(["boom"], 2), batcher.search(["x"], 2), return_exceptions=True
        )
        later = await batcher.search(["y"], 2)  # the worker lives on
        await batcher.stop()
    assert all(isinstance(result, RuntimeError) for result in failed)
    assert later.positions.shape == (1, 2)


async def test_search_before_start_is_an_error():
    with ThreadPoolExecutor(1) as engine, pytest.raises(RuntimeError, match="not running"):
        await MicroBatcher(RecordingRetriever(), engine).search(["a"], 1)


class SubmissionLog(ThreadPoolExecutor):
    """The engine executor, recording the queries of every batch handed to it, in order."""

    def __init__(self):
        super().__init__(max_workers=1)
        self.submitted: list[list[str]] = []

    def submit(self, fn, /, *args, **kwargs):
        self.submitted.append(list(args[0]))
        return super().submit(fn, *args, **kwargs)


async def test_the_next_batch_starts_before_the_finished_one_is_answered():
    """The engine computes what queued meanwhile while the event loop answers the finished batch."""
    gate = threading.Event()
    retriever = RecordingRetriever(gate=gate)
    with SubmissionLog() as engine:
        batcher = MicroBatcher(retriever, engine, max_wait_ms=50)  # a busy engine's next batch never waits
        batcher.start()
        first = asyncio.create_task(batcher.search(["a"], 2))
        while not retriever.calls:  # "a" is in the engine
            await asyncio.sleep(0.001)
        second = asyncio.create_task(batcher.search(["b"], 2))
        await asyncio.sleep(0.01)  # "b" queued meanwhile
        gate.set()
        await first
        assert engine.submitted == [["a"], ["b"]]  # "b" was handed over before "a" was answered
        await second
        await batcher.stop()


async def test_a_lone_request_does_not_wait_for_company_that_is_not_coming():
    """One client at a time: no max_wait_ms per request (it waits only once a batch had company)."""
    retriever = RecordingRetriever()
    with ThreadPoolExecutor(1) as engine:
        batcher = MicroBatcher(retriever, engine, max_wait_ms=600_000)  # a wait would outlast the test
        batcher.start()
        for query in ("a", "b", "c"):
            await asyncio.wait_for(batcher.search([query], 2), 60)
        await batcher.stop()
    assert [queries for queries, _ in retriever.calls] == [["a"], ["b"], ["c"]]
