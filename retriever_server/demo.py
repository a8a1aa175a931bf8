"""The demo: the shipped sample corpus, the offline MiniLM encoder, a flat index and BM25.

`serve --demo` needs nothing else. Indexes are built on first use into
`<cache_dir>/demo/<corpus fingerprint>-<encoder hash>/`, so a changed corpus or encoder rebuilds and
an unchanged one starts in seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

from retriever_server.index.corpus import CorpusStore
from retriever_server.index.encoder import EncoderConfig
from retriever_server.index.params import PARAMS_FILE
from retriever_server.models import offline_model_path
from retriever_server.settings import Settings

logger = logging.getLogger(__name__)

SAMPLE_CORPUS = Path(__file__).resolve().parent / "samples" / "corpus.jsonl"


def minilm_path() -> str:
    return str(offline_model_path("minilm"))


def demo_encoder_config() -> EncoderConfig:
    """sentence-transformers all-MiniLM-L6-v2: mean pooling, L2 norm, no prefixes, 256 tokens."""
    return EncoderConfig(
        model=minilm_path(),
        pooling="mean",
        query_prefix="",
        passage_prefix="",
        max_length=256,
        normalize=True,
    )


def prepare_demo(settings: Settings) -> Settings:
    """Settings that serve the sample corpus with dense + BM25 indexes (built here when missing)."""
    from retriever_server.index.bm25 import build_bm25
    from retriever_server.index.builder import build_dense
    from retriever_server.index.encoder import Encoder

    if not SAMPLE_CORPUS.is_file():
        raise FileNotFoundError(f"the sample corpus {SAMPLE_CORPUS} is missing from this checkout")
    corpus = CorpusStore.open(SAMPLE_CORPUS, settings.cache_dir)
    config = demo_encoder_config()
    encoder_key = hashlib.blake2b(
        json.dumps(config.identity(), sort_keys=True).encode(), digest_size=6
    ).hexdigest()
    root = Path(settings.cache_dir).expanduser() / "demo" / f"{corpus.fingerprint[:12]}-{encoder_key}"
    dense, bm25 = root / "dense", root / "bm25"
    if not (dense / PARAMS_FILE).is_file():
        logger.warning("building the demo dense index in %s (once)", dense)
        encoder = Encoder(config, device=settings.device, batch_size=64)
        build_dense(corpus, encoder, dense, shard_size=len(corpus), show_progress=False)
    if not (bm25 / PARAMS_FILE).is_file():
        build_bm25(corpus, bm25, show_progress=False)
    return replace(
        settings,
        corpus=str(corpus.directory),
        dense_index=str(dense),
        bm25_index=str(bm25),
        retriever=settings.retriever if settings.retriever != ["dense"] else ["dense", "bm25"],
        encoder=config.model,
        pooling=config.pooling,
        query_prefix=config.query_prefix,
        passage_prefix=config.passage_prefix,
        max_length=config.max_length,
        normalize=config.normalize,
    )
