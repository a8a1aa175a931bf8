"""The search pipeline behind the routes, independent of HTTP: what a /search does with its queries.

service.py   `SearchService`: cache, micro-batched engine, fusion, squeezer seam
cache.py     the LRU cache of per-query top-k rows
batching.py  cross-request micro-batching, the server's one de-duplication layer
fusion.py    reciprocal-rank fusion of the variants' top-k lists
loading.py   builds the service from settings: corpus, encoder, indexes, squeezer
"""
