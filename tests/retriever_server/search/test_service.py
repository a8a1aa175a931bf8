"""SearchService on its own: the LRU cache around the batcher's joining of identical queries, with a
gated retriever (the Retriever protocol; the test decides when the engine finishes) over a real
corpus store."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from retriever_server.bench.synthetic import write_synthetic_corpus
from retriever_server.index.corpus import CorpusStore
from retriever_server.index.hits import SearchResults
from retriever_server.metrics import ServerMetrics
from retriever_server.search.service import SearchService
from retriever_server.settings import Settings
from retriever_server.squeezer import build_squeezer

N_PASSAGES = 40


class GatedRetriever:
    """Blocks every engine call until `gate` is set; records the queries of each call."""

    name, identity, size = "dense", "gated", N_PASSAGES

    def __init__(self, fail: bool = False):
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []
        self.fail = fail

    def search(self, queries: list[str], k: int) -> SearchResults:
        self.calls.append(list(queries))
        self.entered.set()
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("engine exploded")
        positions = np.array([[(sum(map(ord, q)) + j) % N_PASSAGES for j in range(k)] for q in queries])
        return SearchResults.from_index(
            positions, np.ones(positions.shape, np.float32), {"encode": 1.0, "search": 2.0}
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> CorpusStore:
    root = tmp_path_factory.mktemp("corpus")
    return CorpusStore.open(write_synthetic_corpus(root / "corpus.jsonl", N_PASSAGES), root / "cache")


def service_with(corpus: CorpusStore, retriever: GatedRetriever, cache_size: int) -> SearchService:
    settings = Settings(corpus="unused", dense_index="unused", cache_size=cache_size, max_wait_ms=0)
    return SearchService(settings, corpus, {"dense": retriever}, build_squeezer(settings), ServerMetrics())


def counter(service: SearchService, name: str) -> float:
    return service.metrics.registry.get_sample_value(name) or 0.0


async def engine_entered(retriever: GatedRetriever) -> None:
    await asyncio.to_thread(retriever.entered.wait, 10)


async def started_with_twin(corpus: CorpusStore, retriever: GatedRetriever, cache_size: int):
    """A running service, a first lookup of "q" held in the engine, and a second lookup of "q" after it."""
    service = service_with(corpus, retriever, cache_size)
    service.start()
    first = asyncio.create_task(service.lookup(["q"], 3, "dense"))
    await engine_entered(retriever)
    twin = asyncio.create_task(service.lookup(["q"], 3, "dense"))
    await asyncio.sleep(0.01)
    return service, first, twin


async def test_identical_queries_in_flight_are_computed_once(corpus):
    retriever = GatedRetriever()
    service = service_with(corpus, retriever, cache_size=1000)
    service.start()
    first = asyncio.create_task(service.search(["who founded x", "x history"], 5, None, None, None, None))
    await engine_entered(retriever)  # the first request's queries are in the engine now
    twins = [
        asyncio.create_task(service.search(["who founded  x", "x history"], 5, None, None, None, None))
        for _ in range(4)
    ]  # white space differs: the same normalised query
    await asyncio.sleep(0.05)
    retriever.gate.set()
    bodies = await asyncio.gather(first, *twins)
    await service.stop()
    assert retriever.calls == [["who founded x", "x history"]]  # computed once, for the first request
    assert all(body["per_query"] == bodies[0]["per_query"] for body in bodies)
    assert [body["cached"] for body in bodies] == [False, True, True, True, True]
    assert bodies[1]["timings_ms"]["encode"] == 1.0  # the twin's batch timings
    assert counter(service, "retriever_joined_queries_total") == 8  # cache misses, joined in the batcher
    assert (
        counter(service, "retriever_cache_hits_total") == 0
        and counter(service, "retriever_cache_misses_total") == 10
    )
    again = await asyncio.wait_for(service.search(["x history"], 5, None, None, None, None), 10)
    assert again["cached"] and counter(service, "retriever_cache_hits_total") == 1  # memoised


async def test_a_cancelled_request_does_not_strand_its_twins(corpus):
    retriever = GatedRetriever()
    service, owner, twin = await started_with_twin(corpus, retriever, cache_size=1000)
    owner.cancel()  # e.g. the first client went away
    retriever.gate.set()
    results, cached = await twin
    await service.stop()
    assert owner.cancelled() and cached and results.positions.shape == (1, 3)
    assert len(retriever.calls) == 1
    assert service.cache.get("q", 3, "gated") is not None  # the twin cached the row


async def test_an_engine_failure_reaches_every_waiting_request_and_nothing_is_cached(corpus):
    retriever = GatedRetriever(fail=True)
    service, owner, twin = await started_with_twin(corpus, retriever, cache_size=1000)
    retriever.gate.set()
    outcomes = await asyncio.gather(owner, twin, return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert len(service.cache) == 0
    retriever.fail = False
    results, cached = await service.lookup(["q"], 3, "dense")  # computed afresh, not a stale failure
    await service.stop()
    assert not cached and len(retriever.calls) == 2 and results.positions.shape == (1, 3)


async def test_with_the_cache_off_identical_queries_in_flight_are_still_joined(corpus):
    """--cache-size 0 turns memoisation off, not de-duplication: a twin in flight is joined, a later
    identical request is computed again."""
    retriever = GatedRetriever()
    service, first, second = await started_with_twin(corpus, retriever, cache_size=0)
    retriever.gate.set()
    (_, first_cached), (_, second_cached) = await asyncio.gather(first, second)
    _, later_cached = await service.lookup(["q"], 3, "dense")
    await service.stop()
    assert retriever.calls == [["q"], ["q"]] and len(service.cache) == 0
    assert not first_cached and second_cached and not later_cached
    assert counter(service, "retriever_cache_hits_total") == 0
    assert counter(service, "retriever_joined_queries_total") == 1
