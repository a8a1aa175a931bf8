"""Cross-request micro-batching: one engine thread, fed by an asyncio queue.

Rollout workers send many small concurrent requests (one per trajectory turn, 1-3 queries each).
Running each on its own wastes the encoder and the index, and racing threads on one GPU index are
unsafe. Instead every request's queries go into a queue; one worker coroutine takes whatever is
waiting (up to `max_batch_queries`, waiting at most `max_wait_ms` for more when the engine is idle),
de-duplicates identical queries across requests, runs ONE `retriever.search` in the engine thread,
and scatters the rows back. While the engine computes a batch, the next one gathers in the queue.

With `enabled=False` every request is its own batch (still one at a time through the engine): the
"batching off" baseline of the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from retriever_server.hits import SearchResults

logger = logging.getLogger(__name__)


class Retriever(Protocol):
    name: str
    identity: str
    size: int

    def search(self, queries: list[str], k: int) -> SearchResults: ...


@dataclass
class _Pending:
    queries: list[str]
    k: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Coalesce concurrent `search` calls for one retriever into batched engine calls."""

    def __init__(
        self,
        retriever: Retriever,
        engine: ThreadPoolExecutor,
        *,
        enabled: bool = True,
        max_batch_queries: int = 256,
        max_wait_ms: float = 2.0,
        on_batch=None,
    ):
        self.retriever = retriever
        self.engine = engine
        self.enabled = enabled
        self.max_batch_queries = max_batch_queries
        self.max_wait_s = max_wait_ms / 1e3
        self.on_batch = on_batch  # callback(n_requests, n_queries, results) for metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
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

    async def search(self, queries: list[str], k: int) -> SearchResults:
        """Top-k rows for `queries`, computed in some batch together with other requests' queries."""
        if self._worker is None:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(queries, k, future))
        return await future

    def _take_queued(self, batch: list[_Pending]) -> list[_Pending]:
        """Add what is already queued to `batch`, up to `max_batch_queries` (one request with batching off)."""
        n_queries = sum(len(pending.queries) for pending in batch)
        while not self._queue.empty() and (
            not batch or (self.enabled and n_queries < self.max_batch_queries)
        ):
            batch.append(self._queue.get_nowait())
            n_queries += len(batch[-1].queries)
        return batch

    async def _collect(self) -> list[_Pending]:
        """The next batch when the engine is idle: wait for a request, then up to max_wait_ms for company.

        Only when the last batch had company: one client at a time would wait max_wait_ms per request
        for nobody (2 ms of the 13 ms that one client lost to the plain Search-R1-shaped server).
        """
        batch = self._take_queued([await self._queue.get()])
        deadline = time.perf_counter() + self.max_wait_s
        while (
            self.enabled
            and (self._had_company or len(batch) > 1)
            and sum(len(pending.queries) for pending in batch) < self.max_batch_queries
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

    def _start(self, batch: list[_Pending]) -> tuple[list[_Pending], dict[str, int], asyncio.Future]:
        """Hand `batch` to the engine thread: each distinct query once, at the largest k asked."""
        unique: dict[str, int] = {}
        for pending in batch:
            for query in pending.queries:
                unique.setdefault(query, len(unique))
        k = max(pending.k for pending in batch)
        self._had_company = len(batch) > 1
        computing = asyncio.get_running_loop().run_in_executor(
            self.engine, self.retriever.search, list(unique), k
        )
        return batch, unique, computing

    def _finish(
        self, batch: list[_Pending], unique: dict[str, int], outcome: SearchResults | Exception
    ) -> None:
        """Scatter the rows of a finished batch to its requests (or the engine's error to all of them)."""
        for pending in batch:
            if pending.future.done():
                pass
            elif isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome.rows([unique[q] for q in pending.queries], pending.k))
            self._queue.task_done()
        if self.on_batch is not None and not isinstance(outcome, Exception):
            self.on_batch(len(batch), len(unique), outcome)

    async def _run(self) -> None:
        running = self._start(await self._collect())
        while True:
            batch, unique, computing = running
            try:
                outcome = await computing
            # the engine failed: every waiting request gets the error, the loop lives on
            except Exception as exc:
                logger.exception("engine batch of %d requests failed", len(batch))
                outcome = exc
            # What queued during this batch starts before this batch's requests are answered, so the
            # engine computes while the event loop answers them; answering first left the engine idle
            # for that time (9% of it at 64 clients on 2 cores). Only an idle engine waits for company.
            queued = self._take_queued([])
            running = self._start(queued) if queued else None
            self._finish(batch, unique, outcome)
            if running is None:
                running = self._start(await self._collect())
