"""Build the search service from settings: corpus, encoder, indexes, squeezer (blocking; off the event loop)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from retriever_server.metrics import ServerMetrics
from retriever_server.search.service import SearchService
from retriever_server.settings import Settings

logger = logging.getLogger(__name__)


def set_threads(settings: Settings) -> None:
    """Pin torch and faiss thread counts (0: every core) so the two never oversubscribe the CPU."""
    import faiss
    import torch

    cores = os.cpu_count() or 1
    torch.set_num_threads(settings.torch_threads or cores)
    faiss.omp_set_num_threads(settings.faiss_threads or cores)


def load_service(settings: Settings, metrics: ServerMetrics) -> SearchService:
    from retriever_server.index.corpus import CorpusStore
    from retriever_server.squeezer import SqueezerResources, build_squeezer

    if settings.demo:
        from retriever_server.demo import prepare_demo

        settings = prepare_demo(settings)
    settings.validate()
    set_threads(settings)
    corpus = CorpusStore.open(settings.corpus, settings.cache_dir)
    retrievers = {}
    encoder, encoder_name = None, None
    for name in settings.retriever:
        if name == "dense":
            from retriever_server.index.dense import DenseRetriever, Placement
            from retriever_server.index.encoder import Encoder, EncoderConfig

            config = EncoderConfig(
                model=settings.encoder,
                pooling=settings.pooling,
                query_prefix=settings.query_prefix,
                passage_prefix=settings.passage_prefix,
                max_length=settings.max_length,
                normalize=settings.normalize,
            )
            encoder = Encoder(
                config, device=settings.device, fp16=settings.fp16, batch_size=settings.max_batch_queries
            )
            placement = Placement(tuple(settings.gpus), settings.gpu_shard, settings.gpu_fp16)
            retrievers[name] = DenseRetriever.load(
                Path(settings.dense_index),
                encoder,
                len(corpus),
                corpus.fingerprint,
                placement,
                settings.ef_search,
                settings.nprobe,
            )
            encoder_name = settings.encoder
        else:
            from retriever_server.index.bm25 import BM25Retriever

            retrievers[name] = BM25Retriever(Path(settings.bm25_index), len(corpus), corpus.fingerprint)
    for retriever in retrievers.values():
        retriever.search(["warm up"], 1)  # first-call costs (allocations, lazy init) are paid before "ok"
    # the one thread that owns the encoder and the indexes; the extractive squeezer encodes there too
    engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retriever-engine")
    squeezer = build_squeezer(settings, SqueezerResources(encoder=encoder, engine=engine, metrics=metrics))
    metrics.corpus_passages.set(len(corpus))
    logger.info(
        "serving %s over %d passages (squeezer: %s)", list(retrievers), len(corpus), settings.squeezer
    )
    return SearchService(settings, corpus, retrievers, squeezer, metrics, encoder_name, engine=engine)
