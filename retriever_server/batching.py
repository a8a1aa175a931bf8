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

    def __init__(self, retriever: Retriever, engine: ThreadPoolExecutor, *, enabled: bool = True,
                 max_batch_queries: int = 256, max_wait_ms: float = 2.0, on_batch=None):
        self.retriever = retriever
        self.engine = engine
        self.enabled = enabled
        self.max_batch_queries = max_batch_queries
        self.max_wait_s = max_wait_ms / 1e3
        self.on_batch = on_batch  # callback(n_requests, n_queries, results) for metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.retriever.name}")

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

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        if not self.enabled:
            return batch
        n_queries = len(batch[0].queries)
        deadline = time.perf_counter() + self.max_wait_s
        while n_queries < self.max_batch_queries:
            if self._queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            batch.append(item)
            n_queries += len(item.queries)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                unique: dict[str, int] = {}
                for pending in batch:
                    for query in pending.queries:
                        unique.setdefault(query, len(unique))
                k = max(pending.k for pending in batch)
                results = await loop.run_in_executor(self.engine, self.retriever.search, list(unique), k)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_result(results.rows([unique[q] for q in pending.queries], pending.k))
                if self.on_batch is not None:
                    self.on_batch(len(batch), len(unique), results)
            except Exception as exc:  # the engine failed: every waiting request gets the error, the loop lives on
                logger.exception("engine batch of %d requests failed", len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
