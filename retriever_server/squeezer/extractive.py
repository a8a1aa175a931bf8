"""`extractive` backend: no LLM; the passages' sentences nearest to the queries, under a token budget.

    1. the unique passages, best first, cut to the context budget (context.py);
    2. split them into sentences; embed the queries (and the question) as queries and the sentences
       as passages with the server's own encoder, in the engine thread that owns it (never a second
       copy in another thread, never racing the retrieval batches); a passage's sentences are
       encoded once and kept (LRU), since passages recur across variants, turns and rollouts;
    3. score each sentence by its best cosine similarity to any query;
    4. take sentences best first while they fit in `--squeezer-max-tokens` (counted with the
       encoder's tokenizer) and score at least half the best one, skipping near-copies of a
       sentence already taken (the variants' passages overlap);
    5. write them grouped by passage, in passage order and in their original order within it.

A cheap baseline (tens of milliseconds on CPU) and a squeezer that cannot hallucinate.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from retriever_server.index.corpus import Passage
from retriever_server.squeezer import SqueezeError, SqueezerResources
from retriever_server.squeezer.cache import passage_digest
from retriever_server.squeezer.context import TokenCounter, select_passages, tokenizer_counter

# a sentence ends at . ! or ? (optionally closed by a quote or bracket) before white space and a capital or digit
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
NEAR_COPY = 0.95  # cosine above which a sentence repeats one already taken
# sentences scoring under this fraction of the best one are left out even when the budget has room:
# filling 512 tokens with off-topic sentences would only add noise to the observation
MIN_RELATIVE_SCORE = 0.5


def split_sentences(text: str) -> list[str]:
    return [sentence.strip() for sentence in _SENTENCE_END.split(text) if sentence.strip()]


class _Split(NamedTuple):
    sentences: list[str]
    rows: np.ndarray  # (len(sentences), dim) unit vectors
    sizes: list[int]  # tokens per sentence


class ExtractiveSqueezer:
    """Sentences are encoded once per passage: passages recur across turns, variants and rollouts, so
    the last `cache_passages` passages' sentence vectors are kept (~8 KB per passage for MiniLM)."""

    name = "extractive"

    def __init__(
        self,
        encoder,
        engine,
        *,
        max_tokens: int = 512,
        context_tokens: int = 4096,
        count_tokens: TokenCounter | None = None,
        cache_passages: int = 8192,
    ):
        self.encoder = encoder
        self.engine = engine
        self.model = encoder.config.model
        self.prompt_id = ""
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.count_tokens = count_tokens or tokenizer_counter(copy.deepcopy(encoder.tokenizer))
        self.cache_passages = cache_passages
        self._seen: OrderedDict[str, _Split] = OrderedDict()  # passage digest -> its sentences, LRU

    def _embed(self, queries: list[str], sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(query rows, sentence rows), L2-normalised; runs in the engine thread."""
        rows = [self.encoder.encode(queries, is_query=True), self.encoder.encode(sentences, is_query=False)]
        return tuple(row / np.maximum(np.linalg.norm(row, axis=1, keepdims=True), 1e-12) for row in rows)

    async def _split_and_embed(
        self, targets: list[str], passages: list[Passage]
    ) -> tuple[np.ndarray, list[_Split]]:
        """Query rows and every passage's sentences; only passages not seen lately are encoded."""
        keys = [passage_digest(passage) for passage in passages]
        missing = {
            key: split_sentences(p.text)
            for key, p in zip(keys, passages, strict=True)
            if key not in self._seen
        }
        flat = [sentence for sentences in missing.values() for sentence in sentences]
        loop = asyncio.get_running_loop()
        query_rows, rows = await loop.run_in_executor(self.engine, self._embed, targets, flat)
        sizes = self.count_tokens(flat)
        start = 0
        for key, sentences in missing.items():
            end = start + len(sentences)
            self._seen[key] = _Split(sentences, rows[start:end].copy(), sizes[start:end])
            start = end
        splits = []
        for key in keys:
            self._seen.move_to_end(key)
            splits.append(self._seen[key])
        while len(self._seen) > self.cache_passages:
            self._seen.popitem(last=False)
        return query_rows, splits

    async def squeeze(self, queries: list[str], documents: list[Passage], question: str | None) -> str:
        passages = select_passages(documents, self.context_tokens, self.count_tokens)  # 1
        targets = [*queries, question] if question else list(queries)
        query_rows, splits = await self._split_and_embed(targets, passages)  # 2
        where = [p for p, split in enumerate(splits) for _ in split.sentences]
        sentences = [sentence for split in splits for sentence in split.sentences]
        if not sentences:
            raise SqueezeError("the passages have no text to extract from")
        sentence_rows = np.concatenate([split.rows for split in splits])
        scores = (sentence_rows @ query_rows.T).max(axis=1)  # 3
        sizes = [size for split in splits for size in split.sizes]
        taken: list[int] = []
        used = 0
        floor = MIN_RELATIVE_SCORE * float(scores.max())
        for i in np.argsort(-scores, kind="stable").tolist():  # 4
            if scores[i] < floor:
                break
            if used + sizes[i] > self.max_tokens:
                continue
            if taken and float((sentence_rows[taken] @ sentence_rows[i]).max()) > NEAR_COPY:
                continue
            taken.append(i)
            used += sizes[i]
        if not taken:
            raise SqueezeError(f"no sentence fits in squeezer_max_tokens={self.max_tokens}")
        by_passage: dict[int, list[int]] = {}
        for i in sorted(taken):  # 5
            by_passage.setdefault(where[i], []).append(i)
        return "\n".join(
            f"{passages[p].title}: " + " ".join(sentences[i] for i in rows)
            for p, rows in sorted(by_passage.items())
        )

    async def aclose(self) -> None:
        return None


def build_extractive_squeezer(settings, resources: SqueezerResources) -> ExtractiveSqueezer:
    if resources.encoder is None or resources.engine is None:
        raise ValueError(
            "squeezer=extractive uses the dense retriever's encoder: serve --retriever dense (or dense,bm25)"
        )
    return ExtractiveSqueezer(
        resources.encoder,
        resources.engine,
        max_tokens=settings.squeezer_max_tokens,
        context_tokens=settings.squeezer_context_tokens,
    )
