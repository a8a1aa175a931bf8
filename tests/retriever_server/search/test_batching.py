"""The micro-batcher on its own, with a recording retriever (the Retriever protocol, no model): batches,
and the server's one de-duplication layer (identical queries joined while queued or in the engine)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retriever_server.index.hits import SearchResults
from retriever_server.search.batching import MicroBatcher


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
        return expected(queries, k)


def expected(queries: list[str], k: int) -> SearchResults:
    positions = np.array([[sum(map(ord, q)) * 10 + j for j in range(k)] for q in queries])
    return SearchResults.from_index(positions, -positions.astype(np.float32), {"encode": 1.0, "search": 2.0})


class Recorder:
    """The batcher's metric callbacks: (n_requests, n_queries) of every batch, and the joins."""

    def __init__(self):
        self.batches: list[tuple[int, int]] = []
        self.joined = 0

    def on_batch(self, n_requests: int, n_queries: int, results: SearchResults) -> None:
        self.batches.append((n_requests, n_queries))

    def on_join(self, n_queries: int) -> None:
        self.joined += n_queries


def batcher_with(
    retriever: RecordingRetriever, engine: ThreadPoolExecutor, **options
) -> tuple[MicroBatcher, Recorder]:
    recorder = Recorder()
    batcher = MicroBatcher(retriever, engine, on_batch=recorder.on_batch, on_join=recorder.on_join, **options)
    return batcher, recorder


@contextlib.asynccontextmanager
async def gated(fail_on: str | None = None, **options):
    """A running batcher over a retriever whose every call waits for the gate (set it to let one through)."""
    gate = threading.Event()
    retriever = RecordingRetriever(fail_on, gate)
    with ThreadPoolExecutor(1) as engine:
        batcher, recorder = batcher_with(retriever, engine, **options)
        batcher.start()
        try:
            yield retriever, batcher, recorder, gate
        finally:
            gate.set()
            await batcher.stop()


async def busy_with(
    batcher: MicroBatcher, retriever: RecordingRetriever, query: str, k: int = 2
) -> asyncio.Task:
    """A search of `query` held in the engine (by the gate)."""
    task = asyncio.create_task(batcher.search([query], k))
    await in_engine(retriever, len(retriever.calls) + 1)
    return task


def assert_rows(got: tuple[SearchResults, int], queries: list[str], k: int) -> None:
    results, _ = got
    want = expected(queries, k)
    assert results.positions.shape == (len(queries), k)
    assert (
        results.positions.tolist() == want.positions.tolist()
        and results.scores.tolist() == want.scores.tolist()
    )


async def _run(batcher: MicroBatcher, requests: list[tuple[list[str], int]]):
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.search(q, k) for q, k in requests), return_exceptions=True)
    finally:
        await batcher.stop()


async def in_engine(retriever: RecordingRetriever, n_calls: int = 1) -> None:
    """Until the engine has entered its n-th call (it then waits for the gate)."""
    while len(retriever.calls) < n_calls:
        await asyncio.sleep(0.001)


async def submitted(*requests) -> list[asyncio.Task]:
    """Tasks for `requests`, each run up to its first wait (its queries queued or joined)."""
    tasks = [asyncio.create_task(request) for request in requests]
    await asyncio.sleep(0)
    return tasks


async def test_concurrent_requests_share_one_batch_and_duplicates_are_computed_once():
    retriever = RecordingRetriever()
    requests = [(["a", "b"], 3), (["b", "c"], 5), (["a"], 1), (["c", "c"], 2)]
    with ThreadPoolExecutor(1, thread_name_prefix="engine") as engine:
        batcher, recorder = batcher_with(retriever, engine, max_batch_queries=100, max_wait_ms=50)
        results = await _run(batcher, requests)
    assert retriever.calls == [(["a", "b", "c"], 5)]  # one engine call, largest k, each query once
    assert retriever.threads == {"engine_0"}
    for (queries, k), got in zip(requests, results, strict=True):
        assert_rows(got, queries, k)
    assert [queued for _, queued in results] == [2, 1, 0, 0]  # distinct queries each request queued
    assert recorder.joined == 4 and recorder.batches == [(2, 3)]  # b, a, c, c; requests that queued, queries


async def test_a_query_queued_behind_a_busy_engine_is_joined_not_queued_again():
    async with gated() as (retriever, batcher, recorder, gate):
        busy = await busy_with(batcher, retriever, "a")
        first, twin = await submitted(batcher.search(["q", "r"], 2), batcher.search(["q"], 2))
        gate.set()
        got = await asyncio.gather(busy, first, twin)
    assert retriever.calls == [(["a"], 2), (["q", "r"], 2)]
    assert_rows(got[1], ["q", "r"], 2)
    assert_rows(got[2], ["q"], 2)
    assert [queued for _, queued in got] == [1, 2, 0] and recorder.joined == 1
    assert recorder.batches == [(1, 1), (1, 2)]  # the joining request queued nothing: no company


async def test_a_query_in_the_engine_is_joined_and_survives_its_first_requester_being_cancelled():
    async with gated() as (retriever, batcher, recorder, gate):
        first = await busy_with(batcher, retriever, "q", 3)
        (twin,) = await submitted(batcher.search(["q"], 3))
        first.cancel()  # e.g. the first client went away: the computation goes on for the twin
        await asyncio.sleep(0)
        gate.set()
        got = await twin
        gate.clear()
        alone = await busy_with(batcher, retriever, "lonely", 3)
        alone.cancel()  # nobody else awaits it: its result is simply dropped
        await asyncio.sleep(0)
        gate.set()
        later = await batcher.search(["q"], 3)  # computed afresh: nothing stale stays shared
    assert first.cancelled() and alone.cancelled()
    assert_rows(got, ["q"], 3)
    assert_rows(later, ["q"], 3)
    assert got[1] == 0 and later[1] == 1 and recorder.joined == 1
    assert [queries for queries, _ in retriever.calls] == [["q"], ["lonely"], ["q"]]


async def test_an_engine_failure_reaches_every_joined_request_and_the_loop_lives_on():
    async with gated(fail_on="boom", max_wait_ms=20) as (retriever, batcher, recorder, gate):
        owner = asyncio.create_task(batcher.search(["boom", "x"], 2))
        await in_engine(retriever)
        joined = await submitted(batcher.search(["boom"], 2), batcher.search(["x", "boom"], 2))
        gate.set()
        failed = await asyncio.gather(owner, *joined, return_exceptions=True)
        retriever.fail_on = None
        later = await batcher.search(["boom"], 2)  # the worker lives on; the failure is not shared later
    assert all(isinstance(outcome, RuntimeError) for outcome in failed)
    assert_rows(later, ["boom"], 2)
    assert [queries for queries, _ in retriever.calls] == [["boom", "x"], ["boom"]]
    assert recorder.batches == [(1, 1)]  # a failed batch records no batch metrics


async def test_two_ks_of_one_query():
    """Queued: one engine query at the largest k. In the engine: a smaller k joins, a larger k queues anew."""
    async with gated() as (retriever, batcher, _, gate):
        busy = await busy_with(batcher, retriever, "a")
        small, large = await submitted(batcher.search(["q"], 3), batcher.search(["q"], 5))
        gate.set()
        queued = await asyncio.gather(busy, small, large)
        gate.clear()
        computing = await busy_with(batcher, retriever, "r", 5)
        covered, wider = await submitted(batcher.search(["r"], 4), batcher.search(["r"], 7))
        gate.set()
        started = await asyncio.gather(computing, covered, wider)
    assert retriever.calls[1:] == [(["q"], 5), (["r"], 5), (["r"], 7)]  # k 4 joined the k 5 computation
    assert_rows(queued[1], ["q"], 3)
    assert_rows(queued[2], ["q"], 5)
    for result, k in zip(started, (5, 4, 7), strict=True):
        assert_rows(result, ["r"], k)
    assert [n for _, n in queued[1:] + started] == [1, 0, 1, 0, 1]


async def test_the_batch_cap_counts_distinct_queries():
    requests = [["x", "y"], ["x", "z"], ["y", "z"], ["w", "v"], ["u", "t"], ["x"]]
    async with gated(max_batch_queries=4, max_wait_ms=0) as (retriever, batcher, recorder, gate):
        busy = await busy_with(batcher, retriever, "a")
        tasks = await submitted(*(batcher.search(queries, 2) for queries in requests))
        gate.set()
        got = await asyncio.gather(busy, *tasks)
    # x y | z (y, z joined) | w v: 5 distinct queries from 3 requests, then u t; x joined the first
    assert [queries for queries, _ in retriever.calls] == [["a"], ["x", "y", "z", "w", "v"], ["u", "t"]]
    assert recorder.batches == [(1, 1), (3, 5), (1, 2)]
    for queries, result in zip(requests, got[1:], strict=True):
        assert_rows(result, queries, 2)


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


async def test_batching_off_shares_nothing_across_requests():
    """The benchmark's baseline: every request is computed on its own, identical queries too."""
    async with gated(enabled=False) as (retriever, batcher, recorder, gate):
        first = await busy_with(batcher, retriever, "q")
        tasks = await submitted(batcher.search(["q"], 2), batcher.search(["q", "q"], 2))
        gate.set()
        got = await asyncio.gather(first, *tasks)
    assert [queries for queries, _ in retriever.calls] == [["q"], ["q"], ["q"]]
    assert_rows(got[2], ["q", "q"], 2)
    assert recorder.joined == 1  # only the twin within one request


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
        first = await busy_with(batcher, retriever, "a")
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
