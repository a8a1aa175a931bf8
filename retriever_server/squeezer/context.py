"""The squeezer's context: de-duplicated passages, best first, cut at passage boundaries to a budget.

The /search fused list is already ordered by fused score and unique by id; /squeeze takes whatever
the client sends, so passages are de-duplicated here again, by id and by (title, text). Tokens are
counted with the squeezer model's own tokenizer where the server has it (`hf`, and `openai` with
`--squeezer-tokenizer`), else estimated at 4 UTF-8 bytes per token, which over-counts English for
Llama-3-class tokenizers, so the budget errs on the short side. A passage is never cut in the
middle, except the first one when it alone is over the whole budget (cut at a word boundary).
"""

from __future__ import annotations

from collections.abc import Callable

from retriever_server.index.corpus import Passage

TokenCounter = Callable[[list[str]], list[int]]
BYTES_PER_TOKEN = 4


def estimate_tokens(texts: list[str]) -> list[int]:
    """~4 UTF-8 bytes per token: the fallback when the server has no tokenizer for the squeezer model."""
    return [len(text.encode()) // BYTES_PER_TOKEN + 1 for text in texts]


def tokenizer_counter(tokenizer) -> TokenCounter:
    """Count tokens with a Hugging Face tokenizer (one batched call for all passages)."""

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    return count


def format_passage(index: int, passage: Passage) -> str:
    """One numbered passage block; the number is what the summary cites."""
    return f"[{index}] {passage.title}\n{passage.text}".strip()


def format_passages(passages: list[Passage]) -> str:
    return "\n\n".join(format_passage(i, passage) for i, passage in enumerate(passages, 1))


def unique_passages(passages: list[Passage]) -> list[Passage]:
    """First occurrence of every passage, by id (when it has one) and by (title, text)."""
    seen_ids: set[str] = set()
    seen_texts: set[tuple[str, str]] = set()
    unique = []
    for passage in passages:
        text_key = (passage.title, passage.text)
        if (passage.id and passage.id in seen_ids) or text_key in seen_texts:
            continue
        if passage.id:
            seen_ids.add(passage.id)
        seen_texts.add(text_key)
        unique.append(passage)
    return unique


def _cut_to(passage: Passage, tokens: int, budget: int) -> Passage:
    """The passage with its text shortened in proportion to fit `budget`, at a word boundary."""
    keep = max(0, int(len(passage.text) * budget / max(tokens, 1) * 0.95))
    text = passage.text[:keep].rsplit(" ", 1)[0] if keep < len(passage.text) else passage.text
    return Passage(passage.id, f'"{passage.title}"\n{text}', passage.title, text)


def select_passages(
    passages: list[Passage], budget: int, count: TokenCounter = estimate_tokens
) -> list[Passage]:
    """The unique passages, in order, that fit in `budget` tokens once formatted (whole passages only)."""
    unique = unique_passages(passages)
    sizes = count([format_passage(i, passage) for i, passage in enumerate(unique, 1)])
    separator = 2  # the blank line between blocks, generously
    kept, used = [], 0
    for passage, size in zip(unique, sizes, strict=True):
        if used + size > budget:
            if not kept:  # a single passage longer than the whole budget: keep its beginning
                kept.append(_cut_to(passage, size, budget))
            break
        kept.append(passage)
        used += size + separator
    return kept
