"""The engine side: build, load and search indexes over the corpus store (no FastAPI, no asyncio).

corpus.py    the corpus store: JSONL converted once into a memory-mapped form
encoder.py   the text encoder of dense retrieval (any HF encoder; E5's defaults)
dense.py     a faiss inner-product index searched a batch at a time (CPU or GPUs)
bm25.py      lexical retrieval with bm25s
hits.py      `SearchResults`, the one return shape of every retriever
params.py    an index directory's params.json, checked before it is served
builder.py   `build-index`: a resumable dense build (or a BM25 one)
"""
