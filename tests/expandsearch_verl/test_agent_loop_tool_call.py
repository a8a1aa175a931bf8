"""The `tool_call` protocol: the observation is a chat message laid out by verl's continuous-token builder."""

from __future__ import annotations

import json

import pytest

from expandsearch_verl.agent_loop import LAST_TURN_NOTICE

SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
CALL = '<think>Two phrasings.</think><tool_call>{"name": "search", "arguments": {"query_list": ["Eiffel Tower", "who built the tower"]}}</tool_call>'
ANSWER = "<think>Found it.</think><answer> Paris </answer>"  # the engine stops at </answer>
DOC_1 = "Doc 1 (Title: Eiffel Tower)\nThe Eiffel Tower in Paris was built from 1887 to 1889."
DOC_2 = "Doc 2 (Title: Gustave Eiffel)\nGustave Eiffel was a French engineer whose company built the tower."


def tool_turn(content: str, role: str = "tool") -> str:
    """How the chat template lays out a tool result (or a user turn) after a closed assistant turn."""
    if role == "tool":
        content = f"<tool_response>\n{content}\n</tool_response>"
    return f"<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def loop_kwargs(run_kwargs):
    return lambda question="Where is the Eiffel Tower?": run_kwargs(question, protocol="tool_call")


async def test_prompt_lists_the_search_tool(make_loop, scripted, loop_kwargs, chat_tokenizer):
    output = await make_loop(scripted(ANSWER), max_queries=4).run(dict(SAMPLING), **loop_kwargs())
    prompt = chat_tokenizer.decode(output.prompt_ids, skip_special_tokens=False)
    assert prompt.startswith("<|im_start|>system\nAnswer with search.\n\n# Tools\n")
    assert '"name": "search"' in prompt and '"maxItems": 4' in prompt
    assert prompt.endswith("<|im_start|>user\nWhere is the Eiffel Tower?<|im_end|>\n<|im_start|>assistant\n")


async def test_tool_result_has_the_templates_scaffold(
    make_loop, scripted, loop_kwargs, chat_tokenizer, fake_retriever, observations
):
    generator = scripted(CALL, ANSWER)
    loop = make_loop(generator, squeeze=False, topk=2, max_observation_tokens=10_000)
    output = await loop.run(dict(SAMPLING), **loop_kwargs())
    assert fake_retriever.requests[0]["queries"] == ["Eiffel Tower", "who built the tower"]
    # The engine stopped at </tool_call>; the turn is closed with <|im_end|> (forced, mask 0), then the
    # builder adds the newline and the tool turn exactly as the chat template renders it.
    assert observations(output) == [tool_turn(f"{DOC_1}\n\n{DOC_2}")]
    whole = chat_tokenizer.decode(output.response_ids, skip_special_tokens=False)
    assert whole == CALL + tool_turn(f"{DOC_1}\n\n{DOC_2}") + ANSWER
    assert output.num_turns == 4 and output.extra_fields["num_searches"] == 1


async def test_template_rendering_matches_token_for_token(
    make_loop, scripted, loop_kwargs, chat_tokenizer, observations
):
    """The inserted ids are the template's own ids for that turn, not a re-encoding of our text."""
    output = await make_loop(scripted(CALL, ANSWER), squeeze=False, topk=1).run(
        dict(SAMPLING), **loop_kwargs()
    )
    (run,) = observations(output)
    inserted = [t for t, m in zip(output.response_ids, output.response_mask, strict=True) if m == 0]
    messages = [
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": DOC_1},
    ]
    rendered = chat_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith(run.removeprefix("<|im_end|>"))
    assert inserted[1:] == chat_tokenizer.encode(run.removeprefix("<|im_end|>"), add_special_tokens=False)


async def test_no_call_is_answered_as_the_user(
    make_loop, scripted, loop_kwargs, chat_tokenizer, observations
):
    generator = scripted("I believe it is in Paris.<|im_end|>", ANSWER)
    output = await make_loop(generator).run(dict(SAMPLING), **loop_kwargs())
    (run,) = observations(output)
    # the model closed its turn itself: nothing forced, the builder only adds the newline
    assert run.startswith(
        "\n<|im_start|>user\nthe turn ended without a search or an answer. To search, write <tool_call>"
    )
    assert output.extra_fields["invalid_actions"] == 1 and output.extra_fields["num_searches"] == 0


async def test_malformed_call_is_answered_by_the_tool(
    make_loop, scripted, loop_kwargs, chat_tokenizer, observations
):
    generator = scripted(
        '<tool_call>{"name": "search", "arguments": {"query_list": ["a"]</tool_call>', ANSWER
    )
    output = await make_loop(generator).run(dict(SAMPLING), **loop_kwargs())
    (run,) = observations(output)
    assert run.startswith(
        "<|im_end|>\n<|im_start|>user\n<tool_response>\nthe <tool_call> body is not valid JSON"
    )
    assert output.extra_fields["invalid_actions"] == 1


@pytest.mark.parametrize("response_length", [60, 70, 80, 90, 100, 120, 160])
async def test_tool_results_fit_the_remaining_budget(make_loop, scripted, loop_kwargs, response_length):
    generator = scripted(CALL, ANSWER)
    loop = make_loop(generator, response_length=response_length, squeeze=False)
    output = await loop.run(dict(SAMPLING), **loop_kwargs())
    if 0 in output.response_mask:
        assert len(generator.calls) == 2


async def test_two_searches_keep_an_append_only_history(
    make_loop, scripted, loop_kwargs, chat_tokenizer, observations
):
    second = CALL.replace("Eiffel Tower", "Seine river")
    generator = scripted(CALL, second, ANSWER)
    output = await make_loop(generator, squeeze=True, max_turns=3).run(dict(SAMPLING), **loop_kwargs())
    runs = observations(output)
    head = "<|im_end|>\n<|im_start|>user\n<tool_response>\n"
    assert len(runs) == 2 and runs[0].startswith(head + "Summary: ")
    assert runs[1].startswith(head + LAST_TURN_NOTICE + "\n\nSummary: ")
    assert output.extra_fields["num_searches"] == 2


def test_call_fixture_is_valid_json():
    body = CALL.split("<tool_call>")[1].split("</tool_call>")[0]
    assert json.loads(body)["arguments"]["query_list"] == ["Eiffel Tower", "who built the tower"]
