"""One search turn of the agent loop, run live for a question: what the policy would read.

The demo's 135M policy rarely writes a well-formed `<search>`, so its trajectories may never show
retrieval. This sends the one `/search` call a turn makes, through the loop's own client
(`RetrieverClient`), with query variants built plainly from the question (the question, and its key
terms without English stop words: nothing from the gold answer), and builds the observation with
the loop's own `format_observation` and `tags_ids`, decoded: the exact text the loop inserts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.evaluation.trajectory_view import CLOSE, OPEN
from expandsearch_verl.observation import format_observation, tags_ids
from expandsearch_verl.retriever_client import RetrieverClient, SearchResult


@dataclass(frozen=True)
class SearchTurn:
    """The turn's query_list, the server's answer, and the observation the loop would insert."""

    query_list: list[str]
    result: SearchResult
    observation: str  # decoded observation tokens (response_mask 0), wrapper included
    tokens: int


def query_list(question: str) -> list[str]:
    """The question, then its key terms (stop words out) when they differ from it."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    stop = set(STOPWORDS_EN_PLUS)
    terms = " ".join(word for word in re.findall(r"[\w'-]+", question) if word.lower() not in stop)
    variants = [question.strip()]
    if terms and terms.lower() != variants[0].lower():
        variants.append(terms)
    return variants


async def search_turn(question: str, tokenizer: Any, config: AgentLoopConfig) -> SearchTurn:
    """One `/search` with the loop's settings; raises `SearchError` when every attempt fails."""
    queries = query_list(question)[: config.max_queries]
    client = RetrieverClient(config)
    try:
        result = await client.search(
            queries, question=question if config.send_question else None, squeeze=config.squeeze
        )
    finally:
        await client.aclose()
    observation = format_observation(
        [],
        tokenizer,
        config.max_observation_tokens,
        summary=result.summary if result.has_summary else None,
        documents=result.documents,
    )
    if config.protocol == "tags":
        token_ids = tags_ids(observation, tokenizer)
        text = tokenizer.decode(token_ids, skip_special_tokens=False)
    else:  # tool_call: the text goes into a chat `tool` message
        text = observation.text.strip()
        token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return SearchTurn(queries, result, text, len(token_ids))


def render_turn(turn: SearchTurn) -> str:
    """The query_list, the fused titles, squeeze status and timings, then the marked observation."""
    titles = "; ".join(document.title or document.id for document in turn.result.documents)
    squeezed = "yes" if turn.result.has_summary else "no"
    if turn.result.squeeze_error:
        squeezed += f" ({turn.result.squeeze_error})"
    timings = ", ".join(f"{stage} {ms:.0f}" for stage, ms in turn.result.timings_ms.items())
    return "\n".join([
        f"query_list: {turn.query_list}",
        f"fused documents ({len(turn.result.documents)}): {titles}",
        f"squeezed: {squeezed}   timings_ms: {timings or 'not reported'}",
        "",
        f"{OPEN}{turn.observation}{CLOSE}  ({turn.tokens} masked tokens)",
    ])  # fmt: skip
