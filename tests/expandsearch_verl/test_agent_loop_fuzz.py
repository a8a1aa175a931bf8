"""Whatever the model writes, the loop neither raises nor breaks an invariant, and the reward
counts the searches and queries the loop ran.

Two sources of model output: hypothesis-built texts (random text, unclosed and nested tags, huge
queries, invalid JSON, unicode) replayed by the scripted engine, and a real causal LM (the tiny
random Qwen2) sampling through `transformers.generate` with stop strings.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from expandsearch_verl import retriever_client
from expandsearch_verl.reward import compute_score

SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}

FRAGMENTS = [
    "<search>",
    "</search>",
    "<answer>",
    "</answer>",
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "<information>",
    "</information>",
    "\n",
    "Eiffel Tower",
    "Paris",
    " ",
    "<|im_end|>",
    "<|im_start|>",
    '{"name": "search", "arguments": {"query_list": [',
    '"Eiffel Tower"',
    ", ",
    '"Seine"',
    "]}}",
    "}",
    "{",
    '"arguments": "{\\"query_list\\": [\\"x\\"]}"',
    "null",
    "3",
    '"search"',
    '"name"',
    "x" * 80,
    "é🌉ß中文",
    "\ufffd",
    "\x00",
    "\\",
    '"',
]
queries = st.lists(
    st.one_of(st.text(max_size=30), st.sampled_from(["Eiffel Tower", "Paris", "x" * 500])), max_size=6
)
around = st.text(max_size=20)
tags_search = st.builds(
    lambda pre, qs, post: f"{pre}<search>{chr(10).join(qs)}</search>{post}", around, queries, around
)
tool_search = st.builds(
    lambda pre, qs, ascii_only, post: (
        pre
        + "<tool_call>"
        + json.dumps({"name": "search", "arguments": {"query_list": qs}}, ensure_ascii=ascii_only)
        + "</tool_call>"
        + post
    ),
    around,
    st.lists(st.one_of(st.text(max_size=30), st.integers(), st.none()), max_size=6),
    st.booleans(),
    around,
)
answer = st.builds(lambda text: f"<answer>{text}</answer>", around)
turn_text = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=8).map("".join),
    tags_search,
    tool_search,
    answer,
    st.builds(
        lambda text, cut: text[:cut], st.one_of(tags_search, tool_search), st.integers(0, 80)
    ),  # cut short
)


def run_in_fresh_loop(coroutine_factory):
    """Run one example on its own event loop, closing the HTTP pools it opened."""

    async def main():
        try:
            return await coroutine_factory()
        finally:
            for client in retriever_client._clients.pop(asyncio.get_running_loop(), {}).values():
                await client.aclose()

    return asyncio.run(main())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    turns=st.lists(turn_text, min_size=1, max_size=5),
    protocol=st.sampled_from(["tags", "tool_call"]),
    response_length=st.sampled_from(
        [1, 8, 33, 80, 150, 300, 450, 600, 800, 1000]
    ),  # integers() favours tiny ones
    max_observation_tokens=st.sampled_from([1, 5, 20, 60, 150, 300]),
    max_turns=st.sampled_from([1, 2, 3, 4, 5]),
    squeeze=st.booleans(),
)
def test_fuzzed_model_outputs(
    make_loop,
    scripted,
    run_kwargs,
    turns,
    protocol,
    response_length,
    max_observation_tokens,
    max_turns,
    squeeze,
):
    generator = scripted(*turns)

    async def rollout():  # built inside the running loop, as AgentLoopWorker does
        loop = make_loop(
            generator,
            response_length=response_length,
            max_observation_tokens=max_observation_tokens,
            max_turns=max_turns,
            squeeze=squeeze,
            max_query_chars=200,
        )
        return await loop.run(dict(SAMPLING), **run_kwargs(protocol=protocol))

    output = run_in_fresh_loop(rollout)
    assert len(generator.calls) <= max_turns
    fields = output.extra_fields
    event(f"searches: {min(fields['num_searches'], 2)}, invalid actions: {min(fields['invalid_actions'], 2)}")
    assert fields["search_failures"] == 0 and fields["num_searches"] <= max_turns - 1
    assert fields["num_queries"] <= 3 * fields["num_searches"]


# Queries that tell normalisations apart: case (ß casefolds to ss), inner and outer white space of
# every kind, duplicates; no protocol tag and no line break (a tags query is one line), and within
# the loop's caps below, which a bare response does not carry.
query = st.one_of(
    st.text(st.characters(blacklist_characters="<>\n", blacklist_categories=("Cs",)), max_size=25),
    st.sampled_from(
        ["Straße", "STRASSE", "strasse", " Eiffel  Tower ", "eiffel\ttower", "EIFFEL\u00a0TOWER", " ", ""]
    ),
)
tags_turn = st.lists(query, max_size=8).map(
    lambda qs: "<think>go</think><search>" + "\n".join(qs) + "</search>"
)
tool_turn = st.builds(
    lambda qs, ascii_only: (
        "<think>go</think><tool_call>"
        + json.dumps({"name": "search", "arguments": {"query_list": qs}}, ensure_ascii=ascii_only)
        + "</tool_call>"
    ),
    st.lists(st.one_of(query, st.integers(), st.none()), max_size=8),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), protocol=st.sampled_from(["tags", "tool_call"]), searches=st.integers(1, 3))
def test_the_reward_counts_the_queries_the_loop_searched(
    make_loop, scripted, run_kwargs, chat_tokenizer, data, protocol, searches
):
    """The reward reading the bare response (an old dump) finds the loop's search and query counts."""
    turns = data.draw(
        st.lists(tags_turn if protocol == "tags" else tool_turn, min_size=searches, max_size=searches)
    )
    generator = scripted(*turns, "<think>done</think><answer> Paris </answer>")

    async def rollout():
        loop = make_loop(generator, response_length=8000, max_queries=20, max_query_chars=400)
        return await loop.run(dict(SAMPLING), **run_kwargs(protocol=protocol))

    output = run_in_fresh_loop(rollout)
    fields = output.extra_fields
    response = chat_tokenizer.decode(output.response_ids, skip_special_tokens=True)  # what verl's reward gets
    scores = compute_score("nq", response, ["Paris"], {"protocol": protocol})
    event(f"searches run: {fields['num_searches']} of {searches}")
    assert (scores["num_searches"], scores["num_queries"]) == (fields["num_searches"], fields["num_queries"])


@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
@pytest.mark.parametrize("seed", range(4))
async def test_real_lm_trajectories(make_loop, hf_generator, run_kwargs, protocol, seed):
    """The tiny random Qwen2 sampling for real. A caller's extra stop strings make its turns short,
    so trajectories run several turns of feedback and observations."""
    generator = hf_generator(seed)
    response_length = [48, 96, 160, 256][seed]
    loop = make_loop(generator, response_length=response_length, max_observation_tokens=24)
    sampling = dict(SAMPLING, stop=["e", "a"])
    output = await loop.run(sampling, **run_kwargs(protocol=protocol))
    assert len(generator.calls) >= 2 and 0 in output.response_mask  # feedback was given, generation went on


async def test_real_lm_greedy_without_logprobs(make_loop, hf_generator, run_kwargs):
    generator = hf_generator(0)
    output = await make_loop(generator, response_length=64).run(
        dict(SAMPLING, temperature=0, logprobs=False, stop=["o"]), **run_kwargs()
    )
    assert output.response_logprobs is None
    assert len(output.response_ids) == len(output.response_mask) <= 64
