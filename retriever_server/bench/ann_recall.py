"""HNSW against the exact flat index: recall@10 and search throughput, for CPU-only deployments.

Random unit vectors are the pathological case for a graph index (in 384 dimensions every point is
about as far from every other, so the graph has no neighbourhoods to follow); real embeddings have
structure. So recall is measured on three sets:

  - `sample`: the shipped sample corpus (437 passages) encoded by MiniLM, queried with the 250
    shipped sample questions;
  - `minilm`: `n` synthetic wiki-style passages encoded by MiniLM once (about 30 ms a passage on
    2 cores, cached under the workdir like an index build, resumable), queried with 3 variants of
    500 random towns' information needs, as an ExpandSearch turn writes them;
  - `random`: the benchmark's 100k random unit vectors, queried with noisy copies of stored vectors.

Throughput is a batch of 64 queries at a time in this process, over the same vectors, so the
speed-up compares like with like; flat and HNSW are timed alternately, three times, and the speed-up
is the median ratio, because the shared machine's load moves between two timings.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

TOPK = 10
EF_SEARCH = (16, 64, 128)
BATCH = 64
ROUNDS = 3  # flat / HNSW throughput pairs per efSearch; the speed-up is their median ratio


def compare(factory: str, vectors: np.ndarray, queries: np.ndarray) -> dict:
    """Recall@10 of `factory` against Flat at each efSearch, and queries/s of both."""
    import faiss

    from retriever_server.index.dense import BLAS_THRESHOLD

    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    started = time.perf_counter()
    ann = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    ann.add(vectors)
    out = {
        "passages": len(vectors),
        "queries": len(queries),
        "build_s": time.perf_counter() - started,
        "ef_search": {},
    }
    truth = flat.search(queries, TOPK)[1]
    for ef in EF_SEARCH:
        faiss.ParameterSpace().set_index_parameter(ann, "efSearch", ef)
        found = ann.search(queries, TOPK)[1]
        recall = float(np.mean([len(set(a) & set(b)) / TOPK for a, b in zip(found, truth, strict=True)]))
        pairs = [
            (_throughput(flat, queries), _throughput(ann, queries)) for _ in range(ROUNDS)
        ]  # alternated: noise
        out["ef_search"][ef] = {
            "recall_at_10": recall,
            "flat_queries_per_s": statistics.median(f for f, _ in pairs),
            "queries_per_s": statistics.median(a for _, a in pairs),
            "speed_up": statistics.median(a / f for f, a in pairs),
        }
    return out


def _throughput(index, queries: np.ndarray, seconds: float = 1.0) -> float:
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        for start in range(0, len(queries), BATCH):
            index.search(queries[start : start + BATCH], TOPK)
        done += len(queries)
    return done / (time.perf_counter() - started)


def sample_set(encoder) -> tuple[np.ndarray, np.ndarray]:
    """The shipped sample corpus and the shipped sample questions, encoded."""
    from retriever_server.demo import SAMPLE_CORPUS
    from retriever_server.index.corpus import CorpusStore
    from retriever_server.settings import default_cache_dir

    samples = SAMPLE_CORPUS.parents[2] / "data_prep" / "samples"
    questions = [
        json.loads(line)["question"]
        for path in sorted(samples.glob("*/*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    corpus = CorpusStore.open(SAMPLE_CORPUS, default_cache_dir())
    return encoder.encode(list(corpus.iter_contents()), is_query=False), encoder.encode(
        questions, is_query=True
    )


def minilm_set(encoder, workdir: Path, n_passages: int, n_needs: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """A flat MiniLM index of `n_passages` synthetic passages (built once, resumable) and 3 variants per need."""
    from retriever_server.bench.synthetic import query_variants, synthetic_store
    from retriever_server.index.builder import build_dense
    from retriever_server.index.params import PARAMS_FILE

    corpus = synthetic_store(workdir, n_passages)
    index_dir = workdir / f"synthetic-{n_passages}" / "minilm-flat"
    if not (index_dir / PARAMS_FILE).is_file():
        build_dense(corpus, encoder, index_dir, shard_size=2000)
    rng = random.Random(6)
    queries = [q for _ in range(n_needs) for q in query_variants(rng.randrange(n_passages))]
    return _stored_vectors(index_dir), encoder.encode(queries, is_query=True)


def _stored_vectors(index_dir: Path) -> np.ndarray:
    import faiss

    flat = faiss.read_index(str(index_dir / "index.faiss"))
    return flat.reconstruct_n(0, flat.ntotal)


def random_set(index_dir: Path, n_queries: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's random unit vectors, queried with noisy copies of stored ones."""
    import faiss

    vectors = _stored_vectors(index_dir)
    dim = vectors.shape[1]
    queries = vectors[np.random.default_rng(2).choice(len(vectors), n_queries, replace=False)]
    noise = np.random.default_rng(3).standard_normal(queries.shape, dtype=np.float32) / np.float32(
        np.sqrt(dim)
    )
    queries = np.ascontiguousarray(queries + np.float32(0.5) * noise, dtype=np.float32)
    faiss.normalize_L2(queries)
    return vectors, queries


def run(factory: str, encoder, workdir: Path, n_passages: int, random_index: Path) -> dict:
    """`compare` on the sample, MiniLM and random sets (the MiniLM set is skipped when n_passages is 0)."""
    sets = {"sample": sample_set(encoder)}
    if n_passages:
        sets["minilm"] = minilm_set(encoder, workdir, n_passages)
    sets["random"] = random_set(random_index)
    return {name: compare(factory, *vectors_and_queries) for name, vectors_and_queries in sets.items()}
