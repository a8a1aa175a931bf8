"""Lexical retrieval with `bm25s` (sparse BM25 in numpy: no Java, no Lucene).

The index directory holds bm25s's arrays (loaded memory-mapped) and our params.json. Passages are
tokenised with bm25s's tokenizer (lower-case, English stop words); queries the same way at search time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from retriever_server.index.corpus import CorpusStore
from retriever_server.index.hits import SearchResults
from retriever_server.index.params import check_params, identity, read_params, write_params

logger = logging.getLogger(__name__)

STOPWORDS = "en"


def _tokenize(texts: list[str], show_progress: bool = False):
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, return_ids=False, show_progress=show_progress)


def build_bm25(corpus: CorpusStore, output: Path, show_progress: bool = True) -> Path:
    """Index every passage (title + text, as `contents`) and write the bm25s index plus params.json."""
    import bm25s

    output.mkdir(parents=True, exist_ok=True)
    tokens = _tokenize(list(corpus.iter_contents()), show_progress=show_progress)
    model = bm25s.BM25()
    model.index(tokens, show_progress=show_progress)
    model.save(str(output), show_progress=show_progress)
    write_params(
        output,
        {
            "kind": "bm25",
            "corpus_size": len(corpus),
            "corpus_fingerprint": corpus.fingerprint,
            "tokenizer": {"lower": True, "stopwords": STOPWORDS},
        },
    )
    return output


class BM25Retriever:
    """BM25 top-k for a batch of queries; zero-score rows are reported as no hit (-1)."""

    name = "bm25"

    def __init__(self, directory: Path, corpus_size: int, corpus_fingerprint: str):
        import bm25s

        params = read_params(directory)
        check_params(
            directory, params, kind="bm25", corpus_size=corpus_size, corpus_fingerprint=corpus_fingerprint
        )
        self.model = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)
        self.identity = identity(params)
        self.size = corpus_size

    def search(self, queries: list[str], k: int) -> SearchResults:
        started = time.perf_counter()
        tokens = _tokenize(queries)
        tokenized = time.perf_counter()
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        depth = min(k, self.size)
        found, found_scores = self.model.retrieve(tokens, k=depth, show_progress=False, n_threads=0)
        positions[:, :depth] = np.where(found_scores > 0, found, -1)
        scores[:, :depth] = found_scores
        timings = {"encode": (tokenized - started) * 1e3, "search": (time.perf_counter() - tokenized) * 1e3}
        return SearchResults.from_index(positions, scores, timings)
