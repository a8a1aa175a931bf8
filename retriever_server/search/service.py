"""The search service behind the routes: cache, micro-batched engine, fusion, squeezer seam.

No FastAPI here: handlers validate, call these coroutines, and map errors to status codes.

`/search` runs, for all variants of one turn:
  1. normalise the queries; answer what the LRU cache holds;
  2. send the rest to the retriever's micro-batcher (one engine batch with other requests' queries;
     a query identical to one already queued or in the engine joins it: `batching.MicroBatcher`);
  3. fuse the per-variant top-k lists into one de-duplicated list (`fusion.fuse`);
  4. squeeze the fused passages when asked (`squeezer.Squeezer`; a failure degrades to passages; with
     `--squeezer none`, or no passage found, the passages are the result and nothing is squeezed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from retriever_server.index.corpus import CorpusStore, Passage
from retriever_server.index.hits import SearchResults
from retriever_server.metrics import ServerMetrics
from retriever_server.search.batching import MicroBatcher, Retriever
from retriever_server.search.cache import QueryCache, Row, normalize_query
from retriever_server.search.fusion import fuse
from retriever_server.settings import Settings
from retriever_server.squeezer import NONE, Squeezer

logger = logging.getLogger(__name__)


class UnknownRetriever(ValueError):
    """A request named a retriever this server does not serve."""


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _stacked(rows: list[Row], timings_ms: dict[str, float]) -> SearchResults:
    return SearchResults(np.stack([row[0] for row in rows]), np.stack([row[1] for row in rows]), timings_ms)


class SearchService:
    def __init__(
        self,
        settings: Settings,
        corpus: CorpusStore,
        retrievers: dict[str, Retriever],
        squeezer: Squeezer,
        metrics: ServerMetrics,
        encoder_name: str | None = None,
        engine: ThreadPoolExecutor | None = None,
    ):
        self.settings = settings
        self.corpus = corpus
        self.retrievers = retrievers
        self.default_retriever = next(iter(retrievers))
        self.squeezer = squeezer
        self.metrics = metrics
        self.encoder_name = encoder_name
        self.cache = QueryCache(settings.cache_size)
        # the one thread that owns the encoder and the indexes (the extractive squeezer borrows it too)
        self.engine = engine or ThreadPoolExecutor(max_workers=1, thread_name_prefix="retriever-engine")
        self.batchers = {
            name: MicroBatcher(
                retriever,
                self.engine,
                enabled=settings.batching,
                max_batch_queries=settings.max_batch_queries,
                max_wait_ms=settings.max_wait_ms,
                on_batch=lambda n_req, n_q, res, name=name: metrics.record_batch(
                    name, n_req, n_q, res.timings_ms
                ),
                on_join=metrics.joined_queries.inc,
            )
            for name, retriever in retrievers.items()
        }

    def start(self) -> None:
        for batcher in self.batchers.values():
            batcher.start()

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        await self.squeezer.aclose()
        self.engine.shutdown(wait=True)

    def pick(self, name: str | None) -> str:
        if name is None:
            return self.default_retriever
        if name not in self.retrievers:
            raise UnknownRetriever(
                f"retriever {name!r} is not served here; this server serves {list(self.retrievers)}"
            )
        return name

    async def lookup(self, queries: list[str], k: int, retriever: str) -> tuple[SearchResults, bool]:
        """Top-k rows of every query, in order; the bool says this request sent no query to the engine.

        The cache memoises rows (looked up before, filled after); identical queries in flight at once
        are the batcher's to share, with the cache on or off.
        """
        identity = self.retrievers[retriever].identity
        normalized = [normalize_query(query) for query in queries]
        rows: list[Row | None] = [self.cache.get(query, k, identity) for query in normalized]
        missing = [i for i, row in enumerate(rows) if row is None]
        self.metrics.queries.labels(retriever).inc(len(queries))
        self.metrics.cache_hits.inc(len(queries) - len(missing))
        self.metrics.cache_misses.inc(len(missing))
        if not missing:
            return _stacked(rows, {}), True
        results, queued = await self.batchers[retriever].search([normalized[i] for i in missing], k)
        results.positions.flags.writeable = results.scores.flags.writeable = False  # the cache keeps views
        for i, positions, scores in zip(missing, results.positions, results.scores, strict=True):
            rows[i] = (positions, scores)  # views of this request's own small arrays, not of a batch's
            self.cache.put(normalized[i], k, identity, rows[i])
        if len(missing) < len(rows):
            results = _stacked(rows, results.timings_ms)
        return results, not queued

    async def retrieve(self, queries: list[str], k: int, return_scores: bool, retriever: str | None) -> dict:
        """Search-R1's /retrieve: one list per query; items are {document, score} or bare documents."""
        results, _ = await self.lookup(queries, k, self.pick(retriever))
        result = []
        for positions, scores in zip(results.positions.tolist(), results.scores.tolist(), strict=True):
            found = [position for position in positions if position >= 0]
            documents = [
                {"id": p.id, "contents": p.contents, "title": p.title, "text": p.text}
                for p in self.corpus.passages(found)
            ]
            result.append(
                [
                    {"document": document, "score": score}
                    for document, score in zip(documents, scores[: len(documents)], strict=True)
                ]
                if return_scores
                else documents
            )
        return {"result": result}

    async def search(
        self,
        queries: list[str],
        k: int,
        question: str | None,
        squeeze: bool | None,
        max_documents: int | None,
        retriever: str | None,
    ) -> dict:
        """ExpandSearch's /search: all variants of a turn fused, de-duplicated, optionally squeezed."""
        started = time.perf_counter()
        results, cached = await self.lookup(queries, k, self.pick(retriever))  # steps 1-2
        fused = fuse(results, self.settings.fusion, self.settings.rrf_k)  # step 3
        if max_documents is not None:
            fused = fused[:max_documents]
        passages = self.corpus.passages([hit.position for hit in fused])  # passages until the response edge
        per_query = [self.corpus.passage_ids(row[row >= 0]) for row in results.positions]
        summary, squeeze_error, squeeze_ms = None, None, 0.0
        wanted = self.settings.squeeze_default if squeeze is None else squeeze
        if wanted and passages and self.squeezer.name != NONE:  # step 4
            squeeze_started = time.perf_counter()
            summary, squeeze_error = await self._squeeze(queries, passages, question)
            squeeze_ms = _ms(time.perf_counter() - squeeze_started)
        return {
            "documents": [
                {
                    "id": passage.id,
                    "title": passage.title,
                    "text": passage.text,
                    "score": hit.score,
                    "query_hits": hit.query_hits,
                }
                for hit, passage in zip(fused, passages, strict=True)
            ],
            "per_query": per_query,
            "summary": summary,
            "squeezed": summary is not None,
            "squeeze_error": squeeze_error,
            "cached": cached,
            "timings_ms": {
                "encode": round(results.timings_ms.get("encode", 0.0), 3),
                "search": round(results.timings_ms.get("search", 0.0), 3),
                "squeeze": squeeze_ms,
                "total": _ms(time.perf_counter() - started),
            },
        }

    async def _squeeze(
        self, queries: list[str], passages: list[Passage], question: str | None
    ) -> tuple[str | None, str | None]:
        """(summary, None) or (None, reason): the rollout degrades to passages, it never fails."""
        timeout = self.settings.squeeze_timeout_s
        try:
            return await asyncio.wait_for(self.squeezer.squeeze(queries, passages, question), timeout), None
        except TimeoutError:
            reason, kind = f"squeezer {self.squeezer.name!r} timed out after {timeout} s", "timeout"
        except Exception as exc:
            reason, kind = f"squeezer {self.squeezer.name!r} failed: {type(exc).__name__}: {exc}", "error"
        self.metrics.squeeze_failures.labels(kind).inc()
        logger.warning("%s; returning the fused passages", reason)
        return None, reason

    async def squeeze(self, queries: list[str], passages: list[Passage], question: str | None) -> dict:
        """/squeeze: the backend's summary (`none`: the passages themselves); raises what the backend raises."""
        started = time.perf_counter()
        summary = await asyncio.wait_for(
            self.squeezer.squeeze(queries, passages, question), self.settings.squeeze_timeout_s
        )
        return {
            "summary": summary,
            "backend": self.squeezer.name,
            "timings_ms": {"total": _ms(time.perf_counter() - started)},
        }

    def health(self) -> dict:
        return {
            "status": "ok",
            "corpus_size": len(self.corpus),
            "retriever": self.default_retriever,
            "retrievers": list(self.retrievers),
            "encoder": self.encoder_name,
            "squeezer": self.squeezer.name,
        }
