"""Squeeze cache: keys, memory LRU, sqlite across restarts, shared in-flight squeezes, failures uncached."""

from __future__ import annotations

import asyncio
import json

import pytest

from retriever_server.index.corpus import Passage
from retriever_server.metrics import ServerMetrics
from retriever_server.squeezer.cache import CachedSqueezer, SqueezeCache, squeeze_key

IDENTITY = json.dumps({"backend": "openai", "model": "m", "prompt": "v1+abc"})


class CountingSqueezer:
    """Counts calls; waits on `gate` when one is set; fails while `fail` is set."""

    name = "openai"
    model = "m"

    def __init__(self):
        self.calls = 0
        self.cancelled = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def squeeze(self, queries, documents, question):
        self.calls += 1
        number = self.calls
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            raise RuntimeError("backend down")
        return f"summary {number} of {len(documents)}"

    async def aclose(self):
        return None


def cached(inner, capacity=16, db=None, metrics=None):
    return CachedSqueezer(inner, SqueezeCache(capacity, db), {"backend": "openai", "model": "m"}, metrics)


def test_key_covers_what_changes_the_summary(make_passage):
    docs = [make_passage(1), make_passage(2)]
    key = squeeze_key(IDENTITY, ["a b", "c"], None, docs)
    assert key == squeeze_key(IDENTITY, ["  a   b ", "c"], None, docs)  # white space is not a new squeeze
    relabelled = [Passage("other-id", d.contents, d.title, d.text) for d in docs]
    assert key == squeeze_key(IDENTITY, ["a b", "c"], None, relabelled)  # keyed by content, not id
    changed = [
        squeeze_key(IDENTITY.replace("v1", "v2"), ["a b", "c"], None, docs),
        squeeze_key(IDENTITY, ["c", "a b"], None, docs),
        squeeze_key(IDENTITY, ["a b", "c"], "question?", docs),
        squeeze_key(IDENTITY, ["a b", "c"], None, docs[::-1]),
        squeeze_key(IDENTITY, ["a b", "c"], None, [docs[0], make_passage(2, text="edited")]),
    ]
    assert len({key, *changed}) == 6


async def test_memory_lru_evicts_the_oldest():
    cache = SqueezeCache(2)
    for key in ("a", "b"):
        await cache.put(key, key.upper(), IDENTITY)
    assert await cache.get("a") == "A"  # a is now the newest
    await cache.put("c", "C", IDENTITY)
    assert [await cache.get(key) for key in ("a", "b", "c")] == ["A", None, "C"]
    off = SqueezeCache(0)
    await off.put("a", "A", IDENTITY)
    assert await off.get("a") is None


async def test_sqlite_outlives_the_server(tmp_path, make_passage):
    db = tmp_path / "cache" / "squeezes.sqlite"
    inner = CountingSqueezer()
    first = cached(inner, db=db)
    docs = [make_passage(1)]
    assert await first.squeeze(["q"], docs, None) == "summary 1 of 1"
    await first.aclose()
    second = cached(inner, capacity=0, db=db)  # a restarted server, memory cache off
    assert await second.squeeze(["q"], docs, None) == "summary 1 of 1" and inner.calls == 1
    assert await second.squeeze(["other"], docs, None) == "summary 2 of 1"
    await second.aclose()


async def test_hits_misses_and_failures(make_passage):
    metrics = ServerMetrics()
    inner = CountingSqueezer()
    squeezer = cached(inner, metrics=metrics)
    docs = [make_passage(1), make_passage(2)]
    assert await squeezer.squeeze(["q"], docs, None) == "summary 1 of 2"
    assert await squeezer.squeeze(["q"], docs, None) == "summary 1 of 2"
    inner.fail = True
    with pytest.raises(RuntimeError):
        await squeezer.squeeze(["q2"], docs, None)
    inner.fail = False
    assert await squeezer.squeeze(["q2"], docs, None) == "summary 3 of 2"  # the failure was not cached
    sample = metrics.registry.get_sample_value
    assert sample("retriever_squeeze_cache_total", {"result": "hit"}) == 1
    assert sample("retriever_squeeze_cache_total", {"result": "miss"}) == 3
    assert sample("retriever_squeeze_seconds_count", {"backend": "openai"}) == 2


async def test_identical_squeezes_in_flight_run_once(make_passage):
    metrics = ServerMetrics()
    inner = CountingSqueezer()
    inner.gate = asyncio.Event()
    squeezer = cached(inner, metrics=metrics)
    docs = [make_passage(1)]
    waiting = [asyncio.create_task(squeezer.squeeze(["q"], docs, None)) for _ in range(5)]
    other = asyncio.create_task(squeezer.squeeze(["another"], docs, None))
    await asyncio.sleep(0.05)
    inner.gate.set()
    results = await asyncio.gather(*waiting, other)
    assert inner.calls == 2 and len(set(results[:5])) == 1 and results[5] != results[0]
    assert metrics.registry.get_sample_value("retriever_squeeze_cache_total", {"result": "joined"}) == 4


async def test_the_shared_squeeze_stops_only_when_every_caller_has_gone(make_passage):
    inner = CountingSqueezer()
    inner.gate = asyncio.Event()
    squeezer = cached(inner)
    docs = [make_passage(1)]
    first = asyncio.create_task(squeezer.squeeze(["q"], docs, None))
    second = asyncio.create_task(squeezer.squeeze(["q"], docs, None))
    await asyncio.sleep(0.05)
    first.cancel()  # one caller times out: the other still gets its summary
    await asyncio.sleep(0.05)
    assert inner.cancelled == 0
    inner.gate.set()
    assert await second == "summary 1 of 1"
    inner.gate = asyncio.Event()
    abandoned = [asyncio.create_task(squeezer.squeeze(["new"], docs, None)) for _ in range(2)]
    await asyncio.sleep(0.05)
    for task in abandoned:
        task.cancel()
    await asyncio.gather(*abandoned, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert inner.cancelled == 1 and not squeezer._in_flight  # everyone gone: the backend call is cancelled
    inner.gate.set()
    assert await squeezer.squeeze(["new"], docs, None) == "summary 3 of 1"  # and a later caller starts afresh
