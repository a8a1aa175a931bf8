"""Squeeze cache: (backend, model, prompt, budgets, queries, question, passages) -> summary.

Squeezes recur: GRPO's rollouts of one prompt often open with the same search, validation reruns
the same questions every `test_freq` steps, and a squeeze is the most expensive step of a turn. An
in-memory LRU (`--squeezer-cache-size` entries) serves repeats within a run; an optional sqlite file
(`--squeezer-cache-db`) outlives the server, so a repeated validation run does not pay twice.

Passages are keyed by a digest of their title and text, not by id: /squeeze's documents have no
ids, and a digest cannot confuse two corpora that reuse ids. Queries keep their order (the prompt
lists them in order) and are white-space normalised like the retrieval cache's.

Identical squeezes in flight at once run once: later callers wait on the first call. The shared
call is cancelled only when every caller has gone (each is bounded by `squeeze_timeout_s`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from retriever_server.index.corpus import Passage
from retriever_server.search.cache import normalize_query

logger = logging.getLogger(__name__)


def passage_digest(passage: Passage) -> str:
    return hashlib.blake2b(f"{passage.title}\0{passage.text}".encode(), digest_size=12).hexdigest()


def squeeze_key(identity: str, queries: list[str], question: str | None, documents: list[Passage]) -> str:
    """A hex key for one squeeze; `identity` is the JSON of backend, model, prompt and budgets."""
    parts = [
        identity,
        [normalize_query(q) for q in queries],
        question,
        [passage_digest(d) for d in documents],
    ]
    return hashlib.blake2b(json.dumps(parts, ensure_ascii=False).encode(), digest_size=20).hexdigest()


class SqliteStore:
    """Summaries on disk, one row per key; all sqlite calls run in one thread of its own."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeeze-cache-db")
        self._db = self._thread.submit(self._open).result()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")  # several server replicas may share one file
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS squeezes (key TEXT PRIMARY KEY, summary TEXT NOT NULL, "
            "identity TEXT NOT NULL, created REAL NOT NULL)"
        )
        db.commit()
        return db

    def _get(self, key: str) -> str | None:
        row = self._db.execute("SELECT summary FROM squeezes WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _put(self, key: str, summary: str, identity: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO squeezes VALUES (?, ?, ?, ?)", (key, summary, identity, time.time())
        )
        self._db.commit()

    async def get(self, key: str) -> str | None:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._get, key)

    async def put(self, key: str, summary: str, identity: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._put, key, summary, identity)

    def close(self) -> None:
        self._thread.submit(self._db.close).result()
        self._thread.shutdown(wait=True)


class SqueezeCache:
    """A memory LRU of `capacity` summaries (0: none) in front of an optional sqlite store."""

    def __init__(self, capacity: int, db_path: str | Path | None = None):
        self.capacity = capacity
        self._memory: OrderedDict[str, str] = OrderedDict()
        self.store = SqliteStore(db_path) if db_path else None

    async def get(self, key: str) -> str | None:
        summary = self._memory.get(key)
        if summary is not None:
            self._memory.move_to_end(key)
            return summary
        if self.store is not None:
            summary = await self.store.get(key)
            if summary is not None:
                self._remember(key, summary)
        return summary

    async def put(self, key: str, summary: str, identity: str) -> None:
        self._remember(key, summary)
        if self.store is not None:
            await self.store.put(key, summary, identity)

    def _remember(self, key: str, summary: str) -> None:
        if self.capacity <= 0:
            return
        self._memory[key] = summary
        self._memory.move_to_end(key)
        if len(self._memory) > self.capacity:
            self._memory.popitem(last=False)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


@dataclass
class _Flight:
    task: asyncio.Task
    waiters: int = 0


class CachedSqueezer:
    """Any squeezer behind the cache, with identical in-flight squeezes shared."""

    def __init__(self, inner, cache: SqueezeCache, identity: dict, metrics=None):
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.cache = cache
        self.identity = json.dumps(identity, sort_keys=True)
        self.metrics = metrics
        self._in_flight: dict[str, _Flight] = {}

    async def squeeze(self, queries: list[str], documents: list[Passage], question: str | None) -> str:
        key = squeeze_key(self.identity, queries, question, documents)
        summary = await self.cache.get(key)
        if summary is not None:
            self._count("hit")
            return summary
        flight = self._in_flight.get(key)
        if flight is None:
            self._count("miss")
            flight = _Flight(asyncio.ensure_future(self._compute(key, queries, documents, question)))
            self._in_flight[key] = flight
        else:
            self._count("joined")
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():  # nobody wants it any more
                flight.task.cancel()
                self._forget(key, flight)

    async def _compute(
        self, key: str, queries: list[str], documents: list[Passage], question: str | None
    ) -> str:
        started = time.perf_counter()
        try:
            summary = await self.inner.squeeze(queries, documents, question)
            if self.metrics is not None:
                self.metrics.squeeze_seconds.labels(self.name).observe(time.perf_counter() - started)
            await self.cache.put(key, summary, self.identity)
            return summary
        finally:
            flight = self._in_flight.get(key)
            if flight is not None and flight.task is asyncio.current_task():
                self._forget(key, flight)

    def _forget(self, key: str, flight: _Flight) -> None:
        if self._in_flight.get(key) is flight:
            del self._in_flight[key]

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.squeeze_cache.labels(result).inc()

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.cache.close()
