"""The observation the policy reads after a search: the squeezer's summary, or the fused documents
cut at document boundaries to a token budget, after any notes about the action.

Whole documents are kept best-first while they fit, never a part of one, with one exception: if
not even the first document fits, it is cut at the budget (an empty observation teaches nothing).
A summary and the notes are plain text and are cut at the budget if they must be.

Token ids come with the text, assembled from pieces that end where pre-tokenizers split anyway
(after a blank line, before a `Doc`'s ` (Title:`), so for byte-level BPE tokenizers with Qwen's
pre-tokenizer they are exactly the ids of the joined text (elsewhere they may differ by a token at
a seam; they always decode to the text). The budget bounds these ids exactly. A document's ids are
cached: the same passages come back for the n samples of a prompt and for popular questions, so a
rollout tokenizes a passage once, and building an observation costs list concatenation.

`tags` wraps the observation as `\\n\\n<information>\\n{text}</information>\\n\\n`; `tool_call` sends
the text as a chat `tool` message (verl's builder tokenizes it with the template's scaffold).
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from expandsearch_verl.protocols import OBSERVATION_TAG

BLANK = "\n\n"  # ends every block: notes, each document, a summary
_INFORMATION = OBSERVATION_TAG["tags"]
TAGS_OPEN, TAGS_CLOSE = f"\n\n<{_INFORMATION}>\n", f"</{_INFORMATION}>\n\n"
_CHUNK = 4  # documents tokenized per call on a cache miss; the budget is usually met in the first
_CACHE_SIZE = 1 << 14  # documents whose ids are kept, per tokenizer (~20 MB: texts as keys, int32 ids)


class Document(Protocol):
    title: str
    text: str


@dataclass(frozen=True)
class Observation:
    """The observation's text and its token ids (`len(token_ids)` is what the budget bounds)."""

    text: str
    token_ids: list[int]


def format_document(rank: int, document: Document) -> str:
    return f"Doc {rank}{_body(document)}"


def format_observation(
    notes: Sequence[str],
    tokenizer: Any,
    budget: int,
    *,
    summary: str | None = None,
    documents: Sequence[Document] = (),
) -> Observation:
    """Notes, then the summary (if given) or the documents, in at most `budget` tokens.

    Args:
        notes: sentences about the action or the search (problems, failures, last-turn notice).
        tokenizer: the policy's tokenizer; token counts are the policy's.
        budget: most token ids the observation may have.
        summary: the squeezer's text; when set, `documents` are not shown.
        documents: fused documents, best first.
    """
    if budget <= 0:
        return Observation("", [])
    head = _cut(" ".join(notes), tokenizer, budget) if notes else Observation("", [])
    room = budget - len(head.token_ids)
    if summary is not None:
        tail = _cut(summary.strip(), tokenizer, room)
    elif documents:
        tail = _fit_documents(documents, tokenizer, room, cut_first=not notes)
    elif not notes:
        tail = _cut("The search found no documents.", tokenizer, room)
    else:
        tail = Observation("", [])
    return Observation(head.text + tail.text, head.token_ids + tail.token_ids)


def tags_ids(observation: Observation, tokenizer: Any) -> list[int]:
    """The `tags` protocol's tokens: the observation inside `<information>`."""
    opening, closing = _wrapper_ids(tokenizer)
    return opening + observation.token_ids + closing


def _fit_documents(
    documents: Sequence[Document], tokenizer: Any, budget: int, cut_first: bool
) -> Observation:
    texts: list[str] = []
    token_ids: list[int] = []
    for start in range(0, len(documents), _CHUNK):
        chunk = documents[start : start + _CHUNK]
        for rank, body_ids in enumerate(_document_ids(tokenizer, chunk), start=start + 1):
            rank_ids = _rank_ids(tokenizer, rank)
            if len(token_ids) + len(rank_ids) + len(body_ids) > budget:
                break
            texts.append(format_document(rank, documents[rank - 1]) + BLANK)
            token_ids += rank_ids
            token_ids += body_ids
        else:
            continue
        break
    if not texts and cut_first:  # not even the best document fits and nothing else is shown: cut it
        return _cut(format_document(1, documents[0]), tokenizer, budget)
    return Observation("".join(texts), token_ids)


def _body(document: Document) -> str:
    return f" (Title: {document.title})\n{document.text}"


def _document_ids(tokenizer: Any, documents: Sequence[Document]) -> list[array]:
    """Ids of each document's ` (Title: ...)\\n{text}\\n\\n`, tokenized once per document."""
    bodies = [_body(document) + BLANK for document in documents]
    cache = _id_cache(tokenizer)
    missing = [body for body in dict.fromkeys(bodies) if body not in cache]
    if missing:
        for body, ids in zip(missing, tokenizer(missing, add_special_tokens=False)["input_ids"], strict=True):
            cache[body] = array("i", ids)
        while len(cache) > _CACHE_SIZE:  # evict the oldest
            del cache[next(iter(cache))]
    return [cache[body] for body in bodies]


@functools.cache
def _id_cache(tokenizer: Any) -> dict[str, array]:
    return {}


@functools.lru_cache(maxsize=256)
def _rank_ids(tokenizer: Any, rank: int) -> list[int]:
    return _encode(tokenizer, f"Doc {rank}")


@functools.cache
def _wrapper_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    return _encode(tokenizer, TAGS_OPEN), _encode(tokenizer, TAGS_CLOSE)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _cut(text: str, tokenizer: Any, budget: int) -> Observation:
    """`text` + a blank line if it fits in `budget` tokens, else its longest token prefix that does.

    The blank line is tokenized with the text, so the block ends on a pre-token boundary.
    """
    ids = _encode(tokenizer, text + BLANK)
    if len(ids) <= budget:
        return Observation(text + BLANK, ids)
    for keep in range(budget, 0, -1):
        cut = tokenizer.decode(ids[:keep], skip_special_tokens=False).rstrip("\ufffd").rstrip() + BLANK
        cut_ids = _encode(tokenizer, cut)
        if len(cut_ids) <= budget and cut != BLANK:
            return Observation(cut, cut_ids)
    return Observation("", [])
