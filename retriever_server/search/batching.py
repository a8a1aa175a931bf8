"""Cross-request micro-batching and the server's one de-duplication layer: one engine thread, fed by a queue.

Rollout workers send many small concurrent requests (one per trajectory turn, 1-3 queries each).
Running each on its own wastes the encoder and the index, and racing threads on one GPU index are
unsafe. Instead every request's queries go into a queue; one worker coroutine takes whatever is
waiting (up to `max_batch_queries`, waiting at most `max_wait_ms` for more when the engine is idle),
runs ONE `retriever.search` in the engine thread, and scatters the rows back. While the engine
computes a batch, the next one gathers in the queue.

This is also where identical queries meet, so it is the one place they are computed once: every
distinct query queued or in the engine has one shared entry, and a request asking for it again (a
twin in the same request, another request's copy, GRPO's rollouts of one prompt arriving together)
awaits that entry instead of queueing the query again. The queue therefore holds distinct queries
and a batch needs no de-duplication of its own. A queued entry is computed at the largest k asked
of it; one already in the engine serves the requests whose k it covers, a larger k queues anew.
The computation outlives its requests: a cancelled request leaves the shared entries to the others.

With `enabled=False` every request is its own batch and shares nothing with the others (still one
at a time through the engine): the "batching off" baseline of the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retriever_server.index.hits import SearchResults

logger = logging.getLogger(__name__)


class Retriever(Protocol):
    name: str
    identity: str
    size: int

    def search(self, queries: list[str], k: int) -> SearchResults: ...


@dataclass(eq=False)
class _Query:
    """One distinct query, queued or in the engine; every request that asked for it awaits `future`."""

    text: str
    k: int  # the largest k asked while queued; the batch's k once it is in the engine
    future: asyncio.Future[SearchResults]  # the results of the batch that computed it
    row: int | None = None  # its row in that batch; None while queued


class MicroBatcher:
    """Coalesce concurrent `search` calls for one retriever into batched engine calls, each query once."""

    def __init__(
        self,
        retriever: Retriever,
        engine: ThreadPoolExecutor,
        *,
        enabled: bool = True,
        max_batch_queries: int = 256,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int, int, SearchResults], None] | None = None,
        on_join: Callable[[int], None] | None = None,
    ):
        self.retriever = retriever
        self.engine = engine
        self.enabled = enabled
        self.max_batch_queries = max_batch_queries
        self.max_wait_s = max_wait_ms / 1e3
        self.on_batch = on_batch  # callback(n_requests, n_queries, results) for metrics
        self.on_join = on_join  # callback(n_queries) that joined an identical query instead of queueing
        self._shared: dict[str, _Query] = {}  # query text -> its entry, queued or in the engine
        # one item per request: the queries it added (those no other request had queued or started)
        self._queue: asyncio.Queue[list[_Query]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._had_company = False  # the last batch held more than one request

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(
            self._run(), name=f"batcher-{self.retriever.name}"
        )

    async def stop(self) -> None:
        """Finish everything already queued, then stop the worker."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def search(self, queries: list[str], k: int) -> tuple[SearchResults, int]:
        """Top-k rows for `queries`, in order, and how many distinct queries this call queued (0: all joined).

        A query is queued only when no identical one is queued, or in the engine at a k that covers
        this one; otherwise this call awaits that one's entry (shielded: cancelling this call leaves
        the computation to the others who await it).
        """
        if self._worker is None:
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        mine: dict[str, _Query] = {}
        new: list[_Query] = []
        for text in queries:
            if text in mine:
                continue
            entry = self._shared.get(text)
            if entry is not None and (entry.row is None or entry.k >= k):
                entry.k = max(entry.k, k)  # queued: its batch computes at least this k
            else:
                entry = _Query(text, k, loop.create_future())
                new.append(entry)
                if self.enabled:
                    self._shared[text] = entry
            mine[text] = entry
        if new:
            self._queue.put_nowait(new)
        if self.on_join is not None and len(queries) > len(new):
            self.on_join(len(queries) - len(new))
        batches = await asyncio.shield(asyncio.gather(*(entry.future for entry in mine.values())))
        found = dict(zip(mine, batches, strict=True))
        timings: dict[str, float] = {}
        for batch in batches:
            for stage, ms in batch.timings_ms.items():
                timings[stage] = max(timings.get(stage, 0.0), ms)
        positions = np.stack([found[text].positions[mine[text].row, :k] for text in queries])
        scores = np.stack([found[text].scores[mine[text].row, :k] for text in queries])
        return SearchResults(positions, scores, timings), len(new)

    def _take_queued(self, batch: list[list[_Query]]) -> list[list[_Query]]:
        """Add what is already queued to `batch`, up to `max_batch_queries` (one request with batching off)."""
        n_queries = sum(map(len, batch))
        while not self._queue.empty() and (
            not batch or (self.enabled and n_queries < self.max_batch_queries)
        ):
            batch.append(self._queue.get_nowait())
            n_queries += len(batch[-1])
        return batch

    async def _collect(self) -> list[list[_Query]]:
        """The next batch when the engine is idle: wait for a request, then up to max_wait_ms for company.

        Only when the last batch had company: one client at a time would wait max_wait_ms per request
        for nobody (2 ms of the 13 ms that one client lost to the plain Search-R1-shaped server).
        """
        batch = self._take_queued([await self._queue.get()])
        deadline = time.perf_counter() + self.max_wait_s
        while (
            self.enabled
            and (self._had_company or len(batch) > 1)
            and sum(map(len, batch)) < self.max_batch_queries
        ):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
            self._take_queued(batch)
        return batch

    def _start(self, batch: list[list[_Query]]) -> tuple[list[list[_Query]], asyncio.Future]:
        """Hand `batch` to the engine thread at the largest k asked (its queries are distinct already)."""
        queries = [query for request in batch for query in request]
        k = max(query.k for query in queries)
        for row, query in enumerate(queries):
            query.row, query.k = row, k
        self._had_company = len(batch) > 1
        computing = asyncio.get_running_loop().run_in_executor(
            self.engine, self.retriever.search, [query.text for query in queries], k
        )
        return batch, computing

    def _finish(self, batch: list[list[_Query]], outcome: SearchResults | Exception) -> None:
        """Hand a finished batch's results (or the engine's error) to every request awaiting its queries."""
        for request in batch:
            for query in request:
                if self._shared.get(query.text) is query:
                    del self._shared[query.text]
                if isinstance(outcome, Exception):
                    query.future.set_exception(outcome)
                    query.future.exception()  # retrieved: the awaiting requests re-raise it, nobody else logs it
                else:
                    query.future.set_result(outcome)
            self._queue.task_done()
        if self.on_batch is not None and not isinstance(outcome, Exception):
            self.on_batch(len(batch), sum(map(len, batch)), outcome)

    async def _run(self) -> None:
        running = self._start(await self._collect())
        while True:
            batch, computing = running
            try:
                outcome = await computing
            # the engine failed: every request awaiting this batch gets the error, the loop lives on
            except Exception as exc:
                logger.exception("engine batch of %d requests failed", len(batch))
                outcome = exc
            # What queued during this batch starts before this batch's requests are answered, so the
            # engine computes while the event loop answers them; answering first left the engine idle
            # for that time (9% of it at 64 clients on 2 cores). Only an idle engine waits for company.
            queued = self._take_queued([])
            running = self._start(queued) if queued else None
            self._finish(batch, outcome)
            if running is None:
                running = self._start(await self._collect())
