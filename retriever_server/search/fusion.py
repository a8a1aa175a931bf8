"""Fuse the top-k lists of all query variants into one de-duplicated list (the ExpandSearch turn).

Reciprocal-rank fusion (Cormack et al., 2009) by default: score(d) = sum over the variants that
found d of 1 / (rrf_k + rank), rank starting at 1, rrf_k = 60. It needs no score calibration, so it
fuses BM25 and dense lists alike, and it rewards passages that several variants agree on. `max`
keeps each passage's best raw score instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from retriever_server.index.hits import SearchResults

FUSIONS = ("rrf", "max")


@dataclass
class FusedHit:
    position: int  # corpus row
    score: float  # fused score (rrf) or best raw score (max)
    query_hits: list[int] = field(default_factory=list)  # variants that retrieved it, ascending
    best_rank: int = 0  # best 0-based rank over the variants (tie-break)


def fuse(results: SearchResults, method: str = "rrf", rrf_k: int = 60) -> list[FusedHit]:
    """One entry per distinct passage, best first; ties broken by best rank, then first variant."""
    hits: dict[int, FusedHit] = {}
    for query_index, (positions, scores) in enumerate(zip(results.positions, results.scores, strict=True)):
        for rank, (position, score) in enumerate(zip(positions.tolist(), scores.tolist(), strict=True)):
            if position < 0:
                break
            gain = 1.0 / (rrf_k + rank + 1) if method == "rrf" else score
            hit = hits.get(position)
            if hit is None:
                hits[position] = FusedHit(position, gain, [query_index], rank)
                continue
            hit.score = hit.score + gain if method == "rrf" else max(hit.score, gain)
            if hit.query_hits[-1] != query_index:  # a variant lists a passage once
                hit.query_hits.append(query_index)
            hit.best_rank = min(hit.best_rank, rank)
    return sorted(hits.values(), key=lambda hit: (-hit.score, hit.best_rank, hit.query_hits[0]))
