"""Dense retrieval: an encoder plus a faiss inner-product index, searched a batch at a time.

The index is `Flat` (exact) by default; HNSW and IVF-PQ come from faiss index-factory strings at
build time (`efSearch` / `nprobe` are serve-time settings). Search-R1's published `e5_Flat.index`
(a bare faiss file) is read as it is. With a faiss GPU build the index can be placed on an explicit
list of GPUs, sharded (each GPU holds 1/n of the rows) and stored in fp16.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retriever_server.index.encoder import Encoder
from retriever_server.index.hits import SearchResults
from retriever_server.index.params import IndexMismatch, check_params, identity, read_params

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
# faiss (1.15) scans a flat index with its per-query SIMD loop unless a batch has at least this many
# queries; its default threshold is so high that BLAS is never used for server-sized batches, which
# makes batching useless on CPU. At 16, a batch of 64 queries over 100k x 384 runs ~10x faster here.
BLAS_THRESHOLD = 16
# Below this many queries faiss's own scan (one OpenMP region a search) replaces BLAS, which forks and
# joins its threads once per 1024-row database block: ~100 wake-ups of passive OpenMP threads per 100k
# search. One client's 3 variants took 37 ms through BLAS and 26 ms through the scan here (median over
# 3 alternated runs, 2 busy cores; equal at best), the largest part of the 13 ms that one client lost
# to the plain Search-R1-shaped server. From 6 queries on, BLAS is as fast or faster.
SCAN_BELOW = 6
NEVER = 1 << 30


@dataclass(frozen=True)
class Placement:
    """Where the index lives: CPU, or faiss GPUs."""

    gpus: tuple[int, ...] = ()  # faiss GPU ids; empty = CPU
    shard: bool = True  # split rows across the GPUs (else replicate)
    fp16: bool = True  # store vectors in fp16 on GPU (halves memory; Search-R1 does the same)


def load_faiss_index(path: Path):
    """Read an index directory (ours, with params.json) or a bare faiss file such as `e5_Flat.index`."""
    import faiss

    file = path / INDEX_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"dense index not found: {file}")
    return faiss.read_index(str(file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)


def place(index, placement: Placement):
    """Move an index to the requested GPUs, or leave it on the CPU."""
    import faiss

    if not placement.gpus:
        return index
    if not hasattr(faiss, "GpuMultipleClonerOptions"):
        raise RuntimeError(
            "gpus were requested but this faiss has no GPU support: install a CUDA build of faiss"
        )
    available = faiss.get_num_gpus()
    bad = [gpu for gpu in placement.gpus if not 0 <= gpu < available]
    if bad:
        raise ValueError(f"gpus={list(placement.gpus)}: faiss sees {available} GPU(s); {bad} do not exist")
    options = faiss.GpuMultipleClonerOptions()
    options.shard = placement.shard
    options.useFloat16 = placement.fp16
    resources = [faiss.StandardGpuResources() for _ in placement.gpus]
    vector_resources = faiss.GpuResourcesVector()
    devices = faiss.Int32Vector()
    for gpu, resource in zip(placement.gpus, resources, strict=True):
        vector_resources.push_back(resource)
        devices.push_back(gpu)
    gpu_index = faiss.index_cpu_to_gpu_multiple(vector_resources, devices, index, options)
    gpu_index.referenced_resources = resources  # keep them alive as long as the index
    return gpu_index


class DenseRetriever:
    """Encode a batch of queries and search them in one faiss call.

    Not thread-safe (faiss GPU indexes are not even for search): one engine thread owns it.
    """

    name = "dense"

    def __init__(self, encoder: Encoder, index, identity_key: str, ef_search: int = 128, nprobe: int = 64):
        import faiss

        if index.d != encoder.dim:
            raise IndexMismatch(
                f"the index holds {index.d}-d vectors but encoder {encoder.config.model} "
                f"makes {encoder.dim}-d ones: serve it with the encoder it was built with"
            )
        self.encoder = encoder
        self.index = index
        self.identity = identity_key
        self.size = int(index.ntotal)
        self._faiss = faiss
        space = faiss.ParameterSpace()
        for name, value in (("efSearch", ef_search), ("nprobe", nprobe)):
            with contextlib.suppress(RuntimeError):  # not every parameter applies (nprobe on HNSW)
                space.set_index_parameter(index, name, value)

    @classmethod
    def load(
        cls,
        path: Path,
        encoder: Encoder,
        corpus_size: int,
        corpus_fingerprint: str,
        placement: Placement = Placement(),
        ef_search: int = 128,
        nprobe: int = 64,
    ) -> DenseRetriever:
        """Load and check an index directory, or a bare faiss file (checked by size and dimension only)."""
        if path.is_dir():
            params = read_params(path)
            check_params(
                path,
                params,
                kind="dense",
                corpus_size=corpus_size,
                corpus_fingerprint=corpus_fingerprint,
                encoder=encoder.config.identity(),
            )
            key = identity(params)
        else:
            key = identity(
                {
                    "file": str(path.resolve()),
                    "size": path.stat().st_size,
                    "encoder": encoder.config.identity(),
                }
            )
        index = load_faiss_index(path)
        if index.ntotal != corpus_size:
            raise IndexMismatch(
                f"{path} holds {index.ntotal} vectors but the corpus has {corpus_size} passages: "
                "serve it with the corpus it was built from"
            )
        logger.info("dense index %s: %d vectors, dim %d", path, index.ntotal, index.d)
        return cls(encoder, place(index, placement), key, ef_search, nprobe)

    def search(self, queries: list[str], k: int) -> SearchResults:
        """Top-k rows for every query: one encoder pass and one index search for the whole batch."""
        started = time.perf_counter()
        embeddings = self.encoder.encode(queries, is_query=True)
        encoded = time.perf_counter()
        # a global of faiss, but this retriever's one engine thread is the only one that searches
        self._faiss.cvar.distance_compute_blas_threshold = (
            BLAS_THRESHOLD if len(queries) >= SCAN_BELOW else NEVER
        )
        scores, positions = self.index.search(embeddings, min(k, self.size))
        searched = time.perf_counter()
        if positions.shape[1] < k:  # k larger than the corpus: pad to the promised shape
            pad = k - positions.shape[1]
            positions = np.pad(positions, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)))
        timings = {"encode": (encoded - started) * 1e3, "search": (searched - encoded) * 1e3}
        return SearchResults.from_index(positions, scores, timings)
