"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SQUEEZE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "retriever_requests_total",
            "HTTP requests by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "retriever_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queries = Counter(
            "retriever_queries_total", "queries received, by retriever", ["retriever"], registry=r
        )
        self.cache_hits = Counter(
            "retriever_cache_hits_total", "queries answered from the LRU cache", registry=r
        )
        self.cache_misses = Counter(
            "retriever_cache_misses_total", "queries not in the LRU cache, sent to the batcher", registry=r
        )
        self.joined_queries = Counter(
            "retriever_joined_queries_total",
            "cache misses that joined an identical query already queued or in the engine (or earlier in "
            "the same request) instead of being computed again",
            registry=r,
        )
        self.batch_queries = Histogram(
            "retriever_batch_queries",
            "distinct queries per engine batch",
            ["retriever"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "retriever_batch_requests",
            "requests whose queries an engine batch computes (requests that only joined others' are not counted)",
            ["retriever"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.engine_seconds = Histogram(
            "retriever_engine_seconds",
            "engine time per batch, by stage",
            ["retriever", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.squeeze_failures = Counter(
            "retriever_squeeze_failures_total",
            "squeezes that failed or timed out (passages returned instead), by reason",
            ["reason"],
            registry=r,
        )
        self.squeeze_cache = Counter(
            "retriever_squeeze_cache_total",
            "squeezes by cache outcome: hit, miss (the "
            "backend ran), joined (shared an identical squeeze in flight)",
            ["result"],
            registry=r,
        )
        self.squeeze_seconds = Histogram(
            "retriever_squeeze_seconds",
            "backend time per squeeze (cache misses)",
            ["backend"],
            buckets=SQUEEZE_BUCKETS,
            registry=r,
        )
        self.squeezer_batch = Histogram(
            "retriever_squeezer_batch_requests",
            "requests per hf squeezer generate batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.squeezer_retries = Counter(
            "retriever_squeezer_retries_total",
            "openai squeezer retries, by cause (HTTP status, timeout, connection)",
            ["cause"],
            registry=r,
        )
        self.ready = Gauge("retriever_ready", "1 once the corpus and indexes are loaded", registry=r)
        self.corpus_passages = Gauge("retriever_corpus_passages", "passages in the served corpus", registry=r)

    def record_batch(
        self, retriever: str, n_requests: int, n_queries: int, timings_ms: dict[str, float]
    ) -> None:
        self.batch_requests.labels(retriever).observe(n_requests)
        self.batch_queries.labels(retriever).observe(n_queries)
        for stage, ms in timings_ms.items():
            self.engine_seconds.labels(retriever, stage).observe(ms / 1e3)
