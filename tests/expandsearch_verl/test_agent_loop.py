"""ExpandSearchAgentLoop built from the shipped YAML by hydra, driven by a scripted engine: exact checks."""

from __future__ import annotations

import pytest
from hydra.errors import InstantiationException

from expandsearch_verl.agent_loop import LAST_TURN_NOTICE
from expandsearch_verl.observation import TAGS_CLOSE, TAGS_OPEN
from expandsearch_verl.protocols import STOP_STRINGS
from expandsearch_verl.trajectory import METRIC_KEYS

SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
SEARCH = "<think>I need the tower and its builder.</think><search>Eiffel Tower\nwho built the tower</search>"
ANSWER = "<think>Found it.</think><answer> Paris </answer>"


def information(body: str) -> str:
    """A `tags` observation as the model reads it."""
    return TAGS_OPEN + body + "\n\n" + TAGS_CLOSE


async def test_tags_search_then_answer(
    make_loop, scripted, run_kwargs, fake_retriever, chat_tokenizer, observations
):
    generator = scripted(SEARCH, ANSWER)
    loop = make_loop(generator, squeeze=False, topk=2, max_observation_tokens=10_000)
    output = await loop.run(dict(SAMPLING), **run_kwargs())

    # one /search call with both variants
    assert fake_retriever.requests == [
        {
            "queries": ["Eiffel Tower", "who built the tower"],
            "topk": 2,
            "question": None,
            "squeeze": False,
            "max_documents": None,
        }
    ]
    # the observation is exactly the fused documents inside <information>, as mask-0 tokens
    docs = [
        ("Eiffel Tower", "The Eiffel Tower in Paris was built from 1887 to 1889."),
        ("Gustave Eiffel", "Gustave Eiffel was a French engineer whose company built the tower."),
    ]
    expected = "\n\n".join(
        f"Doc {rank} (Title: {title})\n{text}" for rank, (title, text) in enumerate(docs, 1)
    )
    assert observations(output) == [information(expected)]
    assert chat_tokenizer.decode(output.response_ids) == SEARCH + information(expected) + ANSWER
    assert output.num_turns == 4  # prompt, assistant, observation, assistant
    fields = output.extra_fields
    assert (fields["num_searches"], fields["num_queries"], fields["tool_call_counts"]) == (1, 2, 1)
    assert fields["retrieved_ids"] == ["d2", "d5"] and fields["num_unique_docs"] == 2
    assert fields["retrieval_hit"] == 1.0  # the row's gold answer, Paris, is in a passage
    assert (fields["invalid_actions"], fields["search_failures"], fields["squeezed_fraction"]) == (0, 0, 0.0)
    assert fields["search_latency_ms"] > 0 and output.metrics.tool_calls > 0
    assert fields["turn_scores"] == [] and fields["tool_rewards"] == []


async def test_generation_requests(make_loop, scripted, run_kwargs):
    generator = scripted(SEARCH, ANSWER)
    sampling = dict(SAMPLING, stop=["<|endoftext|>"])
    output = await make_loop(generator, response_length=300).run(sampling, **run_kwargs())
    first, second = generator.calls
    assert first.sampling_params["stop"] == ["<|endoftext|>", *STOP_STRINGS["tags"]]
    assert first.sampling_params["max_tokens"] == 300
    assert second.sampling_params["max_tokens"] == 300 - (len(second.prompt_ids) - len(output.prompt_ids))
    assert first.sampling_params["temperature"] == 1.0 and sampling == dict(SAMPLING, stop=["<|endoftext|>"])


async def test_squeezed_summary_is_shown(
    make_loop, scripted, run_kwargs, chat_tokenizer, fake_retriever, observations
):
    output = await make_loop(scripted(SEARCH, ANSWER)).run(dict(SAMPLING), **run_kwargs())
    (observation,) = observations(output)
    assert observation.startswith(TAGS_OPEN + "Summary: ") and "Doc 1" not in observation
    assert fake_retriever.requests[0]["squeeze"] is True
    assert output.extra_fields["squeezed_fraction"] == 1.0 and output.extra_fields["squeeze_fallbacks"] == 0


async def test_squeezer_failure_falls_back_to_documents(
    make_loop, scripted, run_kwargs, chat_tokenizer, fake_retriever, observations
):
    fake_retriever.squeezer_error = "squeezer timed out"
    output = await make_loop(scripted(SEARCH, ANSWER)).run(dict(SAMPLING), **run_kwargs())
    (observation,) = observations(output)
    assert "Doc 1 (Title: Eiffel Tower)" in observation and output.extra_fields["squeezed_fraction"] == 0.0
    assert output.extra_fields["squeeze_fallbacks"] == 1  # why it was not squeezed, visible in the metrics


async def test_question_is_sent_only_when_asked(make_loop, scripted, run_kwargs, fake_retriever):
    await make_loop(scripted(SEARCH, ANSWER), send_question=True).run(
        dict(SAMPLING), **run_kwargs("Who built it?")
    )
    assert fake_retriever.requests[0]["question"] == "Who built it?"


async def test_answer_in_the_first_turn_ends_without_search(make_loop, scripted, run_kwargs, fake_retriever):
    generator = scripted(ANSWER, SEARCH)
    output = await make_loop(generator).run(dict(SAMPLING), **run_kwargs())
    assert len(generator.calls) == 1 and fake_retriever.requests == [] and output.response_mask.count(0) == 0
    assert output.num_turns == 2


async def test_last_turn_is_announced_and_its_search_not_run(
    make_loop, scripted, run_kwargs, chat_tokenizer, fake_retriever, observations
):
    generator = scripted(SEARCH)  # the model never answers
    output = await make_loop(generator, max_turns=3).run(dict(SAMPLING), **run_kwargs())
    assert len(generator.calls) == 3 and len(fake_retriever.requests) == 2
    first, second = observations(output)
    assert LAST_TURN_NOTICE not in first and LAST_TURN_NOTICE in second
    assert output.response_mask[-1] == 1  # ends with the model's unanswered search
    assert output.extra_fields["num_searches"] == 2


async def test_single_turn_budget_never_searches(make_loop, scripted, run_kwargs, fake_retriever):
    generator = scripted(SEARCH)
    output = await make_loop(generator, max_turns=1).run(dict(SAMPLING), **run_kwargs())
    assert len(generator.calls) == 1 and fake_retriever.requests == [] and 0 not in output.response_mask


async def test_malformed_action_gets_feedback_and_the_trajectory_goes_on(
    make_loop, scripted, run_kwargs, chat_tokenizer, observations
):
    generator = scripted("<think>hmm</think><search>unclosed", "<search>a\nb\nc\nd</search>", ANSWER)
    output = await make_loop(generator, max_turns=4).run(dict(SAMPLING), **run_kwargs())
    first, second = observations(output)
    assert first.startswith(
        TAGS_OPEN + "<search> was opened but never closed with </search>. To search, write"
    )
    assert "only the first 3 were searched" in second
    fields = output.extra_fields
    assert (fields["invalid_actions"], fields["num_searches"], fields["num_queries"]) == (2, 1, 3)


async def test_budget_spent_mid_generation_ends(make_loop, scripted, run_kwargs):
    generator = scripted("<think>" + "long thought " * 200)
    output = await make_loop(generator, response_length=64).run(dict(SAMPLING), **run_kwargs())
    assert len(output.response_ids) == 64 and len(generator.calls) == 1


@pytest.mark.parametrize("response_length", [40, 45, 50, 60, 80, 100, 130])
async def test_observations_fit_the_remaining_budget(make_loop, scripted, run_kwargs, response_length):
    """Near the end of the budget the observation shrinks, or is left out if nothing would fit."""
    generator = scripted(SEARCH, ANSWER)
    output = await make_loop(generator, response_length=response_length, squeeze=False).run(
        dict(SAMPLING), **run_kwargs()
    )
    if 0 in output.response_mask:  # an observation was appended: it left room to generate again
        assert len(generator.calls) == 2
    assert len(output.response_ids) <= response_length


async def test_observation_budget_keeps_whole_documents(
    make_loop, scripted, run_kwargs, chat_tokenizer, observations
):
    first = "Doc 1 (Title: Eiffel Tower)\nThe Eiffel Tower in Paris was built from 1887 to 1889."
    budget = len(chat_tokenizer.encode(first)) + 3  # room for the best document, not for the second
    loop = make_loop(scripted(SEARCH, ANSWER), squeeze=False, max_observation_tokens=budget)
    output = await loop.run(dict(SAMPLING), **run_kwargs())
    assert observations(output) == [information(first)]


@pytest.mark.parametrize(
    ("answers", "hit"),
    [(("Gustave Eiffel",), 1.0), (("the Rhône", "GUSTAVE  eiffel."), 1.0), (("Rhone",), 0.0), ((), 0.0)],
)
async def test_retrieval_hit_is_decided_at_search_time(
    make_loop, scripted, run_kwargs, fake_retriever, answers, hit
):
    """The row's gold answers against every passage retrieved; only the number leaves the loop."""
    output = await make_loop(scripted(SEARCH, ANSWER), topk=2).run(
        dict(SAMPLING), **run_kwargs(answers=answers)
    )
    assert output.extra_fields["retrieval_hit"] == hit
    assert output.extra_fields["retrieved_ids"] == ["d2", "d5"]
    assert not any(isinstance(value, str) for value in output.extra_fields.values())


async def test_a_failed_search_retrieves_nothing(make_loop, scripted, run_kwargs, fake_retriever):
    fake_retriever.mode = "500"
    output = await make_loop(scripted(SEARCH, ANSWER), max_retries=0).run(dict(SAMPLING), **run_kwargs())
    fields = output.extra_fields
    assert (fields["search_failures"], fields["retrieval_hit"], fields["retrieved_ids"]) == (1, 0.0, [])


async def test_without_logprobs(make_loop, scripted, run_kwargs):
    output = await make_loop(scripted(SEARCH, ANSWER)).run(dict(SAMPLING, logprobs=False), **run_kwargs())
    assert output.response_logprobs is None and 0 in output.response_mask


async def test_every_trajectory_has_the_same_extra_field_keys(make_loop, scripted, run_kwargs):
    keys = set()
    for turns in [(ANSWER,), (SEARCH, ANSWER), ("nothing",), (SEARCH,)]:
        output = await make_loop(scripted(*turns)).run(dict(SAMPLING), **run_kwargs())
        keys.add(frozenset(output.extra_fields))
    assert keys == {frozenset({*METRIC_KEYS, "turn_scores", "tool_rewards"})}


async def test_server_weight_versions_are_passed_on(make_loop, scripted, run_kwargs):
    generator = scripted(SEARCH, ANSWER)
    real_generate = generator.generate
    steps = iter([3, 4])

    async def generate(*args, **kwargs):
        output = await real_generate(*args, **kwargs)
        step = next(steps)
        output.extra_fields = {"global_steps": step, "min_global_steps": step, "max_global_steps": step}
        return output

    generator.generate = generate
    output = await make_loop(generator).run(dict(SAMPLING), **run_kwargs())
    assert (output.extra_fields["min_global_steps"], output.extra_fields["max_global_steps"]) == (3, 4)


async def test_row_protocol_wins_over_the_yaml(make_loop, scripted, run_kwargs, fake_retriever):
    call = '<tool_call>{"name": "search", "arguments": {"query_list": ["Paris"]}}</tool_call>'
    generator = scripted(call, ANSWER)
    await make_loop(generator, protocol="tags").run(dict(SAMPLING), **run_kwargs(protocol="tool_call"))
    assert generator.calls[0].sampling_params["stop"] == STOP_STRINGS["tool_call"]
    assert fake_retriever.requests[0]["queries"] == ["Paris"]
    kwargs = run_kwargs()
    del kwargs["extra_info"]["protocol"]
    generator = scripted(ANSWER)
    await make_loop(generator, protocol="tool_call").run(dict(SAMPLING), **kwargs)
    assert generator.calls[0].sampling_params["stop"] == STOP_STRINGS["tool_call"]


def test_bad_yaml_settings_fail_at_construction(make_loop, scripted):
    """What a user sees in the worker's log: hydra's wrapper around our ConfigError."""
    with pytest.raises(
        InstantiationException, match=r"ConfigError.*unknown agent-loop setting\(s\) \['max_querys'\]"
    ):
        make_loop(scripted(ANSWER), max_querys=3)
    with pytest.raises(InstantiationException, match="topk=0: Input should be greater than 0"):
        make_loop(scripted(ANSWER), topk=0)


async def test_an_empty_summary_falls_back_to_documents(
    make_loop, scripted, run_kwargs, observations, fake_retriever
):
    fake_retriever.summary = "  "
    output = await make_loop(scripted(SEARCH, ANSWER)).run(dict(SAMPLING), **run_kwargs())
    (observation,) = observations(output)
    assert "Doc 1 (Title: " in observation and output.extra_fields["squeezed_fraction"] == 0.0
    assert output.extra_fields["squeeze_fallbacks"] == 0  # the squeezer answered, with nothing
