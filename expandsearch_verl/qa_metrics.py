"""Answer metrics of open-domain QA: SQuAD normalisation, exact match, token F1, sub-EM.

The definitions are the ones every number in the ExpandSearch and Search-R1 tables was computed
with (SQuAD's `normalize_answer`, as copied into Search-R1's `qa_em.py` and verl's
`search_r1_like_qa_em.py`), so scores stay comparable with the papers. `normalize_answer` returns
exactly what verl's does for every string (tested differentially); it is only faster.

Deliberate choices (docs/reward.md):
- Gold answers whose normalised form is empty ("The", "...") are ignored: under sub-EM they would
  match every prediction, under EM every blank or article-only answer.
- Token F1 follows the HotpotQA / FlashRAG evaluators: a "yes", "no" or "noanswer" on either side
  scores 0 unless both sides are equal (no partial credit for "yes" against "yes it was").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

# Deleting ASCII bytes from UTF-8 never splits a multi-byte character, so this is exactly
# SQuAD's per-character punctuation filter, at a fraction of the cost on long passages.
PUNCTUATION_BYTES = string.punctuation.encode("ascii")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_YES_NO = frozenset({"yes", "no", "noanswer"})


def strip_punctuation(text: str) -> str:
    """`text` without the ASCII punctuation characters of `string.punctuation`."""
    raw = text.encode("utf-8", "surrogatepass")
    return raw.translate(None, PUNCTUATION_BYTES).decode("utf-8", "surrogatepass")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, drop articles, collapse white space."""
    return " ".join(_ARTICLES.sub(" ", strip_punctuation(text.lower())).split())


class AnswerScores(NamedTuple):
    """Per-prediction metrics, each the maximum over the gold answers."""

    em: float
    f1: float
    subem: float


ZERO_SCORES = AnswerScores(0.0, 0.0, 0.0)


def golden_answers(ground_truth: Any) -> list[str]:
    """The gold answers in any shape verl or a dump hands us, as strings.

    Accepts `{"target": answers}` (the parquet contract), or `answers` itself: a string, a number,
    or a list / tuple / numpy array of those (parquet readers return numpy arrays).

    Raises:
        ValueError: a mapping without "target", or a nested container where an answer should be:
            a dataset bug that would otherwise silently score every sample 0.
    """
    if isinstance(ground_truth, Mapping):
        if "target" not in ground_truth:
            raise ValueError(
                f"ground_truth must be {{'target': [answers]}} or a list of answers; got a mapping "
                f"with keys {sorted(map(str, ground_truth))}"
            )
        ground_truth = ground_truth["target"]
    if ground_truth is None:
        return []
    if isinstance(ground_truth, np.ndarray):
        ground_truth = ground_truth.tolist()
    if isinstance(ground_truth, str | int | float | np.generic):
        ground_truth = [ground_truth]
    if not isinstance(ground_truth, Sequence):
        raise ValueError(
            f"ground_truth target must be a string or a list of strings, got {type(ground_truth).__name__}"
        )
    answers = []
    for answer in ground_truth:
        if answer is None:
            continue
        if not isinstance(answer, str | int | float | np.generic):
            raise ValueError(
                f"each gold answer must be a string, got {type(answer).__name__}: {answer!r:.80}"
            )
        answers.append(str(answer))
    return answers


def normalized_golds(answers: Sequence[str]) -> list[str]:
    """Normalised gold answers, empty ones dropped (see the module docstring)."""
    return [norm for norm in map(normalize_answer, answers) if norm]


def _token_f1(prediction: str, prediction_tokens: Counter[str], gold: str) -> float:
    if (prediction in _YES_NO or gold in _YES_NO) and prediction != gold:
        return 0.0
    gold_tokens = gold.split()
    common = sum((prediction_tokens & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / sum(prediction_tokens.values())
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score_answer(prediction: str | None, golds: Sequence[str]) -> AnswerScores:
    """EM, token F1 and sub-EM of `prediction` against normalised, non-empty `golds`.

    A missing or blank prediction scores 0 on every metric.
    """
    if not golds or prediction is None or not prediction.strip():
        return ZERO_SCORES
    norm = normalize_answer(prediction)
    if norm in golds:
        return AnswerScores(1.0, 1.0, 1.0)
    subem = 1.0 if any(gold in norm for gold in golds) else 0.0
    tokens = Counter(norm.split())
    f1 = max(_token_f1(norm, tokens, gold) for gold in golds) if tokens else 0.0
    return AnswerScores(0.0, f1, subem)
