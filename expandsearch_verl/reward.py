"""The ExpandSearch reward: exact match of the final answer, shaped by format validity.

verl loads it with `reward.custom_reward_function.path=pkg://expandsearch_verl.reward` and calls
`compute_score` once per trajectory (NaiveRewardManager: the decoded response, the row's ground
truth, the row's `extra_info` merged with the agent loop's `extra_fields`, and `reward_kwargs`).
Every value of the reward table is a keyword argument, so a run overrides it from the command line:

    +reward.custom_reward_function.reward_kwargs.wrong_well_formed=0.3
    +reward.custom_reward_function.reward_kwargs.shaping=false      # score = EM

| answer            | well-formed             | malformed           |
|-------------------|-------------------------|---------------------|
| correct (EM = 1)  | correct_well_formed 1.0 | correct_malformed 0.8 |
| wrong             | wrong_well_formed 0.2   | wrong_malformed 0.1 |
| none or blank     | cannot occur (*)        | no_answer_malformed 0.0 |

(*) a well-formed response ends with a non-blank answer (response_format.py), so "no answer but
well-formed" is impossible; nothing to configure there. `retrieval_bonus` (default 0) is added to
`wrong_well_formed` when the gold answer was retrieved (Search-R1's `retrieval_score`).

Pure functions and module constants: no I/O, no state, safe in any number of Ray workers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from numbers import Real
from typing import Any

import numpy as np

from expandsearch_verl.protocols import DEFAULT_PROTOCOL
from expandsearch_verl.qa_metrics import golden_answers, normalized_golds, score_answer
from expandsearch_verl.response_format import extract_answer, scan_response
from expandsearch_verl.retrieval_hit import answer_in_passages

# The reward table. Values from Search-R1's format-reward study (Jin et al., arXiv 2505.15117,
# `qa_em_format.py`: score 1, structure_format_score 0.2, final_format_score 0.1) and the kwargs of
# ferret's released ExpandSearch recipe (`search_r1_format.compute_score_em`, the same values).
CORRECT_WELL_FORMED = 1.0  # score
CORRECT_MALFORMED = 0.8  # score - structure_format_score
WRONG_WELL_FORMED = 0.2  # structure_format_score
WRONG_MALFORMED = 0.1  # final_format_score
NO_ANSWER_MALFORMED = 0.0  # nothing to reward
RETRIEVAL_BONUS = 0.0  # retrieval_score: both released recipes set 0 (the study found little effect)

# The keys of the returned dict, in order; verl builds one batch column per key.
SCORE_KEYS = (
    "score",
    "em",
    "f1",
    "subem",
    "format_ok",
    "has_answer",
    "num_searches",
    "num_queries",
    "retrieval_hit",
)

# Keywords verl itself may pass (NaiveRewardManager with a reward-model server); ignored quietly.
_VERL_CALL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


@dataclass(frozen=True)
class RewardTable:
    """The shaped-reward values; `shaping=False` makes the score plain EM."""

    correct_well_formed: float = CORRECT_WELL_FORMED
    correct_malformed: float = CORRECT_MALFORMED
    wrong_well_formed: float = WRONG_WELL_FORMED
    wrong_malformed: float = WRONG_MALFORMED
    no_answer_malformed: float = NO_ANSWER_MALFORMED
    retrieval_bonus: float = RETRIEVAL_BONUS
    shaping: bool = True

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> RewardTable:
        """The table with `kwargs` (reward_kwargs) applied; unknown names are not ours to judge.

        Raises:
            ValueError: a known name with a value of the wrong kind (a config error: fail early).
        """
        overrides = {name: _checked(name, kwargs[name]) for name in _TABLE_FIELDS if name in kwargs}
        return replace(DEFAULT_TABLE, **overrides) if overrides else DEFAULT_TABLE

    def score(self, em: float, has_answer: bool, format_ok: bool, retrieval_hit: bool) -> float:
        if not self.shaping:
            return em
        if not has_answer:
            return self.no_answer_malformed  # format_ok implies has_answer
        if em:
            return self.correct_well_formed if format_ok else self.correct_malformed
        if format_ok:
            return self.wrong_well_formed + (self.retrieval_bonus if retrieval_hit else 0.0)
        return self.wrong_malformed


DEFAULT_TABLE = RewardTable()
_TABLE_FIELDS = tuple(f.name for f in fields(RewardTable))


def _checked(name: str, value: Any) -> float | bool:
    if name == "shaping":
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        raise ValueError(f"reward_kwargs.shaping must be true or false, got {value!r}")
    if isinstance(value, Real) and not isinstance(value, bool | np.bool_) and math.isfinite(value):
        return float(value)
    raise ValueError(f"reward_kwargs.{name} must be a finite number, got {value!r} ({type(value).__name__})")


def _warn_unknown(kwargs: Mapping[str, Any]) -> None:
    for name in kwargs:
        if name not in _TABLE_FIELDS and name not in _VERL_CALL_KWARGS:
            # warnings shows each distinct message once per process: a typo is seen, not spammed.
            warnings.warn(
                f"expandsearch_verl.reward.compute_score ignores the keyword {name!r}; "
                f"reward_kwargs it knows: {', '.join(_TABLE_FIELDS)}",
                stacklevel=3,
            )


def _loop_count(extra_info: Mapping[str, Any], key: str) -> int | None:
    """A non-negative count the agent loop reported, or None when it is absent or unusable."""
    value = extra_info.get(key)
    if value is None or isinstance(value, str):
        return None
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return count if count >= 0 and count == value else None


def _loop_hit(extra_info: Mapping[str, Any]) -> bool | None:
    """The retrieval hit the loop decided at search time, or None when it is absent or unusable."""
    value = extra_info.get("retrieval_hit")
    if value is None or isinstance(value, str):
        return None
    try:
        return bool(value) if value in (0, 1) else None
    except (TypeError, ValueError):  # e.g. an array
        return None


def _loop_passages(extra_info: Mapping[str, Any]) -> Sequence[str] | None:
    """The raw passages an older loop passed on ("title\\ntext"; dumps written before it sent the
    hit), or None when there are none."""
    passages = extra_info.get("retrieved_passages")
    if passages is None:
        return None
    if isinstance(passages, str):
        return [passages]
    if isinstance(passages, np.ndarray):
        passages = passages.ravel().tolist()
    if not isinstance(passages, Sequence):
        return None
    return [passage for passage in passages if isinstance(passage, str)]


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float | int]:
    """Score one trajectory; the keys and value types are the same for every input (SCORE_KEYS).

    Args:
        data_source: the row's dataset name (unused: every source is scored alike).
        solution_str: the decoded response (policy turns and observations, no prompt).
        ground_truth: `{"target": [answers]}`, or the answers as a string / list / numpy array.
        extra_info: the row's extra_info merged with the agent loop's extra_fields. Read:
            `protocol` ("tags" by default, or "tool_call"), and from the loop `num_searches`,
            `num_queries` and `retrieval_hit`; each falls back to the response text when absent
            (the hit first to `retrieved_passages`, which dumps of older loops carry).
        **kwargs: RewardTable fields (reward_kwargs); anything else is ignored.

    Returns:
        score (float): the shaped reward; em, f1, subem (float): answer metrics, max over golds;
        format_ok, has_answer, retrieval_hit (float, 0 or 1); num_searches, num_queries (int).

    Raises:
        ValueError: bad ground_truth, unknown extra_info.protocol or a bad reward_kwargs value:
            dataset or config errors, reported on the first sample. Never for any response text.
    """
    del data_source
    if kwargs:
        table = RewardTable.from_kwargs(kwargs)
        _warn_unknown(kwargs)
    else:
        table = DEFAULT_TABLE
    extra_info = extra_info if isinstance(extra_info, Mapping) else {}
    protocol = extra_info.get("protocol") or DEFAULT_PROTOCOL
    text = (
        solution_str if isinstance(solution_str, str) else ("" if solution_str is None else str(solution_str))
    )

    golds = normalized_golds(golden_answers(ground_truth))
    scan = scan_response(text, protocol)
    answer = extract_answer(text, protocol)
    has_answer = answer is not None and bool(answer.strip())
    em, f1, subem = score_answer(answer, golds)

    retrieval_hit = _loop_hit(extra_info)
    if retrieval_hit is None:  # an old dump: its passages, else the observations (the squeezer's text)
        passages = _loop_passages(extra_info)
        retrieval_hit = answer_in_passages(golds, scan.observations if passages is None else passages)
    num_searches = _loop_count(extra_info, "num_searches")
    num_queries = _loop_count(extra_info, "num_queries")
    return {
        "score": float(table.score(em, has_answer, scan.format_ok, retrieval_hit)),
        "em": em,
        "f1": f1,
        "subem": subem,
        "format_ok": 1.0 if scan.format_ok else 0.0,
        "has_answer": 1.0 if has_answer else 0.0,
        "num_searches": scan.num_searches if num_searches is None else num_searches,
        "num_queries": scan.num_queries if num_queries is None else num_queries,
        "retrieval_hit": 1.0 if retrieval_hit else 0.0,
    }
