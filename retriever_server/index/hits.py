"""The one return shape of every retriever: positions and scores shaped (n_queries, k).

No flag changes the shape (Search-R1's `return_scores=false` bug came from a function that returned
a tuple or a list depending on a flag). Rows with fewer than k hits are padded with position -1 and
score -inf; callers skip them, so an ANN index's -1 never becomes `corpus[-1]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MISSING = -1


@dataclass(frozen=True)
class SearchResults:
    """Top-k hits of a batch of queries.

    Attributes:
        positions: int64 (n_queries, k) corpus rows, best first; -1 where there is no hit.
        scores: float32 (n_queries, k) similarity (inner product or BM25); -inf where no hit.
        timings_ms: time spent per stage of the batch that produced these rows ("encode", "search").
    """

    positions: np.ndarray
    scores: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        assert self.positions.shape == self.scores.shape and self.positions.ndim == 2, (
            self.positions.shape,
            self.scores.shape,
        )

    @classmethod
    def from_index(
        cls, positions: np.ndarray, scores: np.ndarray, timings_ms: dict[str, float]
    ) -> SearchResults:
        """Normalise raw index output: int64/float32, and -inf score wherever the position is missing."""
        positions = np.ascontiguousarray(positions, dtype=np.int64)
        scores = np.array(scores, dtype=np.float32)
        scores[positions < 0] = -np.inf
        positions[positions < 0] = MISSING
        return cls(positions, scores, timings_ms)
