"""Fixtures for the retriever server: a synthetic corpus with real MiniLM and BM25 indexes, and a
real uvicorn server on a free loopback port running in a thread of the test process."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from retriever_server.bench.synthetic import write_synthetic_corpus
from retriever_server.index.bm25 import build_bm25
from retriever_server.index.builder import build_dense
from retriever_server.index.corpus import CorpusStore
from retriever_server.index.encoder import Encoder, EncoderConfig
from retriever_server.process import free_port
from retriever_server.settings import Settings

N_PASSAGES = 120


def minilm_config(path: Path) -> EncoderConfig:
    return EncoderConfig(model=str(path), pooling="mean", query_prefix="", passage_prefix="", max_length=256)


@pytest.fixture(scope="session")
def minilm_encoder(minilm_path) -> Encoder:
    return Encoder(minilm_config(minilm_path), device="cpu", batch_size=64)


@pytest.fixture(scope="session")
def synthetic_indexes(tmp_path_factory, minilm_encoder) -> dict[str, Path]:
    """A 120-passage corpus, its converted store, a flat MiniLM index and a BM25 index."""
    root = tmp_path_factory.mktemp("synthetic")
    corpus_file = write_synthetic_corpus(root / "corpus.jsonl", N_PASSAGES)
    corpus = CorpusStore.open(corpus_file, root / "cache")
    build_dense(corpus, minilm_encoder, root / "dense", shard_size=50, show_progress=False)
    build_bm25(corpus, root / "bm25", show_progress=False)
    return {"corpus": corpus_file, "cache": root / "cache", "dense": root / "dense", "bm25": root / "bm25"}


@pytest.fixture(scope="session")
def base_settings(synthetic_indexes, minilm_path) -> Settings:
    config = minilm_config(minilm_path)
    return Settings(
        corpus=str(synthetic_indexes["corpus"]),
        dense_index=str(synthetic_indexes["dense"]),
        bm25_index=str(synthetic_indexes["bm25"]),
        retriever=["dense", "bm25"],
        cache_dir=str(synthetic_indexes["cache"]),
        encoder=config.model,
        query_prefix="",
        passage_prefix="",
        torch_threads=1,
        faiss_threads=1,
        cache_size=0,
    )


@contextmanager
def running_server(settings: Settings, wait_ready: bool = True, **app_kwargs) -> Iterator[str]:
    """Serve `create_app(settings)` with uvicorn on a free port in a thread; yields the base URL."""
    import uvicorn

    from retriever_server.api.app import create_app

    port = free_port()
    app = create_app(dataclasses.replace(settings, port=port), **app_kwargs)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status = httpx.get(url + "/health", timeout=5).status_code
            if status == 200 or (status == 503 and not wait_ready):
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        raise TimeoutError(f"server on {url} did not become ready")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def server_url(base_settings) -> Iterator[str]:
    """Dense (default) and BM25 over the synthetic corpus; cache off, batching on."""
    with running_server(base_settings) as url:
        yield url


@pytest.fixture(scope="session")
def serve_app():
    """`running_server` as a fixture (test modules cannot import conftest under importlib mode)."""
    return running_server
