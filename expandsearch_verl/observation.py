"""The observation text the policy reads after a search: the squeezer's summary, or the fused
documents cut at document boundaries to a token budget, after any notes about the action.

Whole documents are kept best-first while they fit, never a part of one, with one exception: if
not even the first document fits, it is cut at the budget (an empty observation teaches nothing).
A summary and the notes are plain text and are cut at the budget if they must be.

The protocols wrap this text differently (`tags_observation` for `<information>`, a chat `tool`
message for `tool_call`); the budget bounds the text, the wrapper's few tokens come on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Document(Protocol):
    title: str
    text: str


def tags_observation(text: str) -> str:
    """The `tags` protocol's observation around `text` (DESIGN.md: blank lines around the block)."""
    return f"\n\n<information>{text}</information>\n\n"


def format_document(rank: int, document: Document) -> str:
    return f"Doc {rank} (Title: {document.title})\n{document.text}"


def format_observation(
    notes: Sequence[str],
    tokenizer: Any,
    budget: int,
    *,
    summary: str | None = None,
    documents: Sequence[Document] = (),
) -> str:
    """Notes, then the summary (if given) or the documents, in at most `budget` tokens.

    Args:
        notes: sentences about the action or the search (problems, failures, last-turn notice).
        tokenizer: the policy's tokenizer; token counts are the policy's.
        budget: most tokens the returned text may encode to (`add_special_tokens=False`).
        summary: the squeezer's text; when set, `documents` are not shown.
        documents: fused documents, best first.
    """
    if budget <= 0:
        return ""
    head = " ".join(notes)
    if summary is not None:
        return _cut(_join(head, summary.strip()), tokenizer, budget)
    if not documents:
        return _cut(head or "The search found no documents.", tokenizer, budget)
    pieces = [format_document(rank, document) for rank, document in enumerate(documents, start=1)]
    return _fit_documents(head, pieces, tokenizer, budget)


def _join(*parts: str) -> str:
    return "\n\n".join(part for part in parts if part)


def _count(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _fit_documents(head: str, pieces: list[str], tokenizer: Any, budget: int) -> str:
    """Take whole documents while the estimate fits, then check the exact count of the joined text.

    The estimate sums per-piece counts (one batched encode); joining can merge a token or two at
    the seams, so the exact count of the result decides and drops documents from the end if needed.
    """
    head_text = _cut(head, tokenizer, budget)
    sizes = _count(tokenizer, [head_text + "\n\n", *[piece + "\n\n" for piece in pieces]])
    used, kept = sizes[0] if head_text else 0, 0
    for size in sizes[1:]:
        if used + size > budget:
            break
        used, kept = used + size, kept + 1
    while kept > 0:
        text = _join(head_text, *pieces[:kept])
        if _count(tokenizer, [text])[0] <= budget:
            return text
        kept -= 1
    if head_text:  # no room for even one document after the notes: show the notes
        return head_text
    return _cut(pieces[0], tokenizer, budget)  # not even the best document fits: cut it


def _cut(text: str, tokenizer: Any, budget: int) -> str:
    """`text` if it fits in `budget` tokens, else its longest token prefix that does."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= budget:
        return text
    keep = budget
    while keep > 0:
        cut = tokenizer.decode(ids[:keep], skip_special_tokens=False).rstrip("\ufffd")
        if len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= budget:
            return cut
        keep -= 1
    return ""
