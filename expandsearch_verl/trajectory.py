"""One trajectory's token buffers and search statistics, and the `extra_fields` verl receives.

Tokens the policy sampled carry mask 1 and their log-probs; tokens we insert (observations, chat
scaffold, a forced end-of-turn) carry mask 0 and log-prob 0.0. `extra_fields` has the same keys
for every trajectory (verl builds batch columns from them, and the reward reads them flat from
its `extra_info`). They are numbers and document ids, never passages: the retrieval hit is
decided here, at search time, where the row's gold answers and every passage are at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from expandsearch_verl.retrieval_hit import answer_in_passages
from expandsearch_verl.retriever_client import SearchResult

# The keys `extra_fields` always carries, besides verl's own `turn_scores` / `tool_rewards`.
METRIC_KEYS = (
    "num_searches",
    "num_queries",
    "num_unique_docs",
    "squeezed_fraction",
    "squeeze_fallbacks",
    "search_latency_ms",
    "observation_tokens",
    "invalid_actions",
    "search_failures",
    "retrieval_hit",
    "tool_call_counts",
    "retrieved_ids",
)


@dataclass
class Trajectory:
    """Response tokens so far (model and inserted), plus what the searches did."""

    prompt_ids: list[int]
    with_logprobs: bool
    golds: list[str] = field(default_factory=list)  # the row's normalised gold answers
    response_ids: list[int] = field(default_factory=list)
    response_mask: list[int] = field(default_factory=list)
    response_logprobs: list[float] = field(default_factory=list)
    assistant_turns: int = 0
    observation_turns: int = 0
    num_searches: int = 0
    num_queries: int = 0
    squeezed_searches: int = 0
    squeeze_fallbacks: int = 0  # asked to squeeze, the server fell back to passages (squeeze_error)
    search_seconds: float = 0.0
    invalid_actions: int = 0
    search_failures: int = 0
    retrieval_hit: bool = False  # a gold answer occurs in a retrieved passage (retrieval_hit.py)
    retrieved: dict[str, None] = field(default_factory=dict)  # document ids, first seen first
    verl_fields: dict[str, Any] = field(default_factory=dict)  # min/max_global_steps from the server

    def add_model_tokens(self, token_ids: list[int], logprobs: list[float] | None) -> None:
        self.response_ids += token_ids
        self.response_mask += [1] * len(token_ids)
        if self.with_logprobs:
            if logprobs is None or len(logprobs) < len(token_ids):
                raise ValueError(
                    f"the generator returned {len(token_ids)} tokens but "
                    f"{'no' if logprobs is None else len(logprobs)} log-probs, though log-probs were requested"
                )
            self.response_logprobs += logprobs[: len(token_ids)]

    def add_inserted_tokens(self, token_ids: list[int]) -> None:
        self.response_ids += token_ids
        self.response_mask += [0] * len(token_ids)
        if self.with_logprobs:
            self.response_logprobs += [0.0] * len(token_ids)

    def replace_response(self, token_ids: list[int], mask: list[int], logprobs: list[float] | None) -> None:
        """Take the response as rebuilt by verl's continuous-token builder (its mask/log-probs aligned)."""
        self.response_ids, self.response_mask = token_ids, mask
        if self.with_logprobs:
            self.response_logprobs = logprobs or []

    def record_search(self, queries: list[str], result: SearchResult | None, seconds: float) -> None:
        self.num_searches += 1
        self.num_queries += len(queries)
        self.search_seconds += seconds
        if result is None:
            self.search_failures += 1
            return
        self.squeezed_searches += result.has_summary
        self.squeeze_fallbacks += result.squeeze_error is not None
        new = [document for document in result.documents if document.id not in self.retrieved]
        self.retrieved.update(dict.fromkeys(document.id for document in new))
        if not self.retrieval_hit and new:
            passages = [f"{document.title}\n{document.text}" for document in new]
            self.retrieval_hit = answer_in_passages(self.golds, passages)

    def extra_fields(self, response_length: int) -> dict[str, Any]:
        searched_ok = self.num_searches - self.search_failures
        return {
            "num_searches": self.num_searches,
            "num_queries": self.num_queries,
            "num_unique_docs": len(self.retrieved),
            "squeezed_fraction": self.squeezed_searches / searched_ok if searched_ok else 0.0,
            "squeeze_fallbacks": self.squeeze_fallbacks,
            "search_latency_ms": 1000.0 * self.search_seconds / self.num_searches
            if self.num_searches
            else 0.0,
            "observation_tokens": self.response_mask[:response_length].count(0),
            "invalid_actions": self.invalid_actions,
            "search_failures": self.search_failures,
            "retrieval_hit": 1.0 if self.retrieval_hit else 0.0,
            "tool_call_counts": self.num_searches,
            "retrieved_ids": list(self.retrieved),
            "turn_scores": [],
            "tool_rewards": [],
            **self.verl_fields,
        }
