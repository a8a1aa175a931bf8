"""Did retrieval surface the answer? A normalised gold answer inside a normalised passage.

The definition is Search-R1's `is_retrieval_correct` (qa_em_format.py): substring containment after
SQuAD normalisation, here over the raw passages the agent loop retrieved. Normalising all of them
(~40 passages, ~25 kB per ExpandSearch trajectory) would cost ~1 ms, so a necessary condition runs
first, over all passages at once:

    gold ⊂ normalize(P)  ⇒  every token of gold ⊂ strip_punctuation(lower(P))

(article removal and white-space collapsing only split text, they never join characters); only the
passages around a hit are then normalised in full. The condition is tested on UTF-8 bytes with
ASCII-only lower-casing, using the ASCII stretches of each token: that finds exactly the same
stretches as `str.lower` unless a passage holds U+0130 or U+212A, the only non-ASCII characters
whose lower case contains ASCII. Otherwise, and for golds with a purely non-ASCII token, the same
test runs on `str`. The tests check the whole function against the plain definition.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import AnyStr

from expandsearch_verl.qa_metrics import PUNCTUATION_BYTES, normalize_answer, strip_punctuation

_SEPARATOR = "\x00"  # not punctuation, not white space, unchanged by lower()
# The only characters whose lower case holds ASCII: U+0130 -> "i\u0307", U+212A -> "k" (tests
# recompute the set from the running Python's Unicode tables).
_LOWERS_TO_ASCII = ("\u0130", "\u212a")
# One bytes.translate pass: ASCII upper -> lower case, ASCII punctuation deleted.
_ASCII_LOWER = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
_ASCII_RUN = re.compile(r"[\x00-\x7f]+")


def _ascii_stretches(gold: str) -> list[bytes]:
    """The maximal ASCII stretches inside the tokens of `gold`, longest (rarest) first; empty if a
    token has none."""
    stretches = []
    for token in gold.split():
        runs = _ASCII_RUN.findall(token)
        if not runs:
            return []
        stretches += runs
    return sorted({run.encode() for run in stretches}, key=len, reverse=True)


def answer_in_passages(golds: Sequence[str], passages: Sequence[str]) -> bool:
    """True when a normalised gold in `golds` (non-empty) is a substring of a normalised passage."""
    if not golds or not passages:
        return False
    joined = _SEPARATOR.join(passages)
    needles = [_ascii_stretches(gold) for gold in golds]
    if all(needles) and not any(char in joined for char in _LOWERS_TO_ASCII):
        # Lower-casing ASCII bytes leaves the ASCII stretches of str.lower(P) unchanged.
        haystack = joined.encode("utf-8", "surrogatepass").translate(_ASCII_LOWER, PUNCTUATION_BYTES)
        return _search(golds, needles, haystack, _SEPARATOR.encode(), passages)
    haystack_str = strip_punctuation(joined.lower())
    tokens = [sorted(set(gold.split()), key=len, reverse=True) for gold in golds]
    return _search(golds, tokens, haystack_str, _SEPARATOR, passages)


def _search(
    golds: Sequence[str],
    needles: Sequence[Sequence[AnyStr]],
    haystack: AnyStr,
    separator: AnyStr,
    passages: Sequence[str],
) -> bool:
    """Normalise in full only a passage where a gold's first needle occurs with all its others.

    `haystack` is the pre-processed passages joined by `separator`; `needles[i]` belong to `golds[i]`,
    longest first. Each needle is looked for at most once (gold aliases share words).
    """
    found: dict[AnyStr, bool] = {}

    def in_haystack(needle: AnyStr) -> bool:
        if needle not in found:
            found[needle] = needle in haystack
        return found[needle]

    live = [(gold, parts) for gold, parts in zip(golds, needles, strict=True) if all(map(in_haystack, parts))]
    if not live:
        return False
    if haystack.count(separator) != len(passages) - 1:  # a passage holds the separator itself
        return any(gold in normalize_answer(passage) for passage in passages for gold, _ in live)
    for gold, parts in live:
        index, counted = 0, 0  # passage number of haystack[counted]
        pos = haystack.find(parts[0])
        while pos >= 0:  # at most once per passage: the next search starts after this one
            start = haystack.rfind(separator, counted, pos) + 1 or counted
            end = haystack.find(separator, pos)
            end = len(haystack) if end < 0 else end
            index, counted = index + haystack.count(separator, counted, start), start
            piece = haystack[start:end]
            if all(n in piece for n in parts) and gold in normalize_answer(passages[index]):
                return True
            pos = haystack.find(parts[0], max(end, pos + 1))  # a needle may hold the separator
    return False
