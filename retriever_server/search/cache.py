"""LRU cache of per-query top-k rows, shared by all requests.

Identical queries recur a lot in RL training: GRPO's n rollouts of one prompt often open with the
same query, validation reruns the same questions, and ExpandSearch variants overlap. The key is
(normalised query, k, index identity), so a rebuilt index or another retriever never serves a
stale row. Used only from the event-loop thread, so it needs no lock.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict

import numpy as np

Row = tuple[np.ndarray, np.ndarray]  # (positions (k,), scores (k,))


def normalize_query(query: str) -> str:
    """NFC, white space collapsed and stripped. Case is kept: cased encoders tell "US" from "us"."""
    return " ".join(unicodedata.normalize("NFC", query).split())


class QueryCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._rows: OrderedDict[tuple[str, int, str], Row] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, query: str, k: int, index_identity: str) -> Row | None:
        if self.capacity <= 0:
            return None
        key = (query, k, index_identity)
        row = self._rows.get(key)
        if row is None:
            self.misses += 1
            return None
        self._rows.move_to_end(key)
        self.hits += 1
        return row

    def put(self, query: str, k: int, index_identity: str, row: Row) -> None:
        if self.capacity <= 0:
            return
        self._rows[(query, k, index_identity)] = row
        self._rows.move_to_end((query, k, index_identity))
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rows)
