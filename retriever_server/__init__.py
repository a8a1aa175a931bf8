"""Retrieval service for search agents: corpus, encoders, faiss / BM25 indexes, multi-query search.

    index/      the engine side: corpus store, encoder, dense and BM25 indexes, the index builder
    search/     the search pipeline behind the routes: service, cache, micro-batcher, fusion, loading
    api/        the FastAPI layer: app, routes, middleware, request/response models
    squeezer/   the squeezer backends that distil the fused passages
    bench/      `python -m retriever_server bench`; scripted/: scripted LLM-server doubles for tests

At the top: the CLI (`__main__.py`), `settings.py` and `metrics.py` (shared by every layer), the
demo, `process.py` (a server as a child process), and `models.py` / `generation.py` (local models,
reused by the plugin). A separate service: it imports nothing from `expandsearch_verl`.
"""
