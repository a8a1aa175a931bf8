"""Reciprocal-rank fusion and the LRU cache, on hand-made results."""

from __future__ import annotations

import numpy as np
import pytest

from retriever_server.index.hits import SearchResults
from retriever_server.search.cache import QueryCache, normalize_query
from retriever_server.search.fusion import fuse


def results(rows):
    positions = np.array([[p for p, _ in row] for row in rows])
    scores = np.array([[s for _, s in row] for row in rows], dtype=np.float32)
    return SearchResults.from_index(positions, scores, {})


def test_rrf_rewards_agreement_and_deduplicates():
    fused = fuse(results([[(5, 0.9), (7, 0.8), (-1, 0.0)], [(7, 0.7), (8, 0.6), (5, 0.5)]]), "rrf", 60)
    assert [hit.position for hit in fused] == [7, 5, 8]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61) and fused[0].query_hits == [0, 1]
    assert fused[1].score == pytest.approx(1 / 61 + 1 / 63) and fused[2].query_hits == [1]


def test_max_fusion_and_tie_breaks():
    fused = fuse(results([[(1, 0.5), (2, 0.4)], [(2, 0.5), (3, 0.1)]]), "max")
    assert [(h.position, h.score) for h in fused] == [(1, 0.5), (2, 0.5), (3, pytest.approx(0.1))]
    tie = fuse(results([[(4, 1.0)], [(3, 1.0)]]), "rrf")
    assert [hit.position for hit in tie] == [4, 3]  # equal score and rank: the earlier variant first


def test_missing_rows_never_become_passages():
    assert fuse(results([[(-1, 0.0), (-1, 0.0)]])) == []
    padded = SearchResults.from_index(np.array([[3, -1]]), np.array([[0.5, 0.9]]), {})
    assert padded.positions.tolist() == [[3, -1]] and padded.scores[0, 1] == -np.inf


def test_cache_is_lru_and_keyed_by_k_and_index():
    cache = QueryCache(2)
    row = (np.array([1]), np.array([0.5]))
    cache.put("a", 3, "idx", row)
    cache.put("b", 3, "idx", row)
    assert cache.get("a", 3, "idx") is row  # a is now the most recent
    cache.put("c", 3, "idx", row)
    assert cache.get("b", 3, "idx") is None and cache.get("a", 3, "idx") is row
    assert cache.get("a", 4, "idx") is None and cache.get("a", 3, "other") is None
    off = QueryCache(0)
    off.put("a", 3, "idx", row)
    assert off.get("a", 3, "idx") is None and len(off) == 0


def test_normalize_query():
    assert normalize_query("  who   founded\tRome \n") == "who founded Rome"
    assert normalize_query("Cafe\u0301") == "Café"
    assert normalize_query("US") != normalize_query("us")
