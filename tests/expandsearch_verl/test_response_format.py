"""Format validity, search counts and answer extraction for both action protocols."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expandsearch_verl.response_format import (
    _gap_ok,
    extract_answer,
    policy_text,
    scan_response,
)

OBS = "\n\n<information>Doc 1(Title: Eiffel Tower) Built by Gustave Eiffel's company.</information>\n\n"
TAGS_OK = (
    "<think>Who built the tower?</think>\n<search>eiffel tower builder\nwho built the Eiffel Tower\n"
    "EIFFEL TOWER BUILDER</search>"
    + OBS
    + "<think>It says Eiffel.</think>\n<answer> Gustave Eiffel </answer>"
)


def call(*queries: str, name: str = "search") -> str:
    return (
        "<tool_call>\n"
        + json.dumps({"name": name, "arguments": {"query_list": list(queries)}})
        + "\n</tool_call>"
    )


# What the Qwen2.5 template leaves of a tool turn after skip_special_tokens decoding.
TOOL_OBS = "\nuser\n<tool_response>\nThe tower was built by Eiffel's company.\n</tool_response>\nassistant\n"
TOOL_OK = f"<think>Who?</think>\n{call('eiffel tower builder', 'who built it')}{TOOL_OBS}<think>Eiffel.</think>\n<answer>Gustave Eiffel</answer>"


def test_well_formed_tags_trajectory():
    scan = scan_response(TAGS_OK, "tags")
    assert scan.format_ok
    assert (scan.num_searches, scan.num_queries) == (1, 2)  # the upper-case repeat is a duplicate
    assert scan.observations == ("Doc 1(Title: Eiffel Tower) Built by Gustave Eiffel's company.",)
    assert extract_answer(TAGS_OK, "tags") == "Gustave Eiffel"


def test_well_formed_tool_call_trajectory_with_chat_role_residue():
    scan = scan_response("\n" + TOOL_OK, "tool_call")
    assert scan.format_ok
    assert (scan.num_searches, scan.num_queries) == (1, 2)
    assert scan.observations == ("\nThe tower was built by Eiffel's company.\n",)


def test_several_turns_and_direct_answers_are_well_formed():
    two_turns = TAGS_OK.replace(
        "<think>It says Eiffel.</think>", "<think>more</think><search>q2</search>" + OBS + "<think>ok</think>"
    )
    assert scan_response(two_turns, "tags").num_searches == 2
    assert scan_response(two_turns, "tags").format_ok
    assert scan_response("<think>easy</think><answer>Paris</answer>\n", "tags").format_ok
    assert scan_response("<think>easy</think><answer>Paris</answer>", "tool_call").format_ok


@pytest.mark.parametrize(
    ("response", "why"),
    [
        ("<answer>Gustave Eiffel</answer>", "no think block"),
        ("<think>a</think><think>b</think><answer>x</answer>", "two thinks in a row"),
        (
            TAGS_OK.replace("<think>It says Eiffel.</think>\n", ""),
            "the turn after an observation skips think",
        ),
        (TAGS_OK + "\n<answer>again</answer>", "a second answer"),
        (TAGS_OK + " Hope this helps!", "prose after the answer"),
        ("I think so. <think>a</think><answer>x</answer>", "prose before the first tag"),
        ("<think>a</think> so <answer>x</answer>", "prose between blocks"),
        ("<think>a</think><answer>  </answer>", "blank answer"),
        ("<think>a</think><answer>cut off by the length lim", "unclosed answer"),
        (
            "<think>a</think><search>q</search>\n\n<information>Doc 1 cut off",
            "truncated observation, no answer",
        ),
        (
            "<think>a</think><search>q</search><think>b</think><answer>x</answer>",
            "search without observation",
        ),
        (
            "<think>a</think><search> \n </search>" + OBS + "<think>b</think><answer>x</answer>",
            "search without query",
        ),
        ("<think>a</think>" + OBS + "<think>b</think><answer>x</answer>", "observation the policy wrote"),
        ("<think>a</think><sarch>q</sarch>" + OBS + "<think>b</think><answer>x</answer>", "misspelt action"),
        ("<think>I will <search>q</search> now</think><answer>x</answer>", "tag inside think"),
        ("<think>a</think></search><answer>x</answer>", "stray closing tag"),
        ("<think>a</think><answer>x</answer>\nuser\n", "role residue is not allowed in the tags protocol"),
        ("<think>a</think><answer>x</answer><think>b</think>", "a block after the answer"),
        ("", "empty response"),
    ],
)
def test_malformed_tags_responses(response: str, why: str):
    assert not scan_response(response, "tags").format_ok, why


@pytest.mark.parametrize(
    ("action", "why"),
    [
        ("<tool_call>{not json}</tool_call>", "invalid JSON"),
        ("<tool_call>[1, 2]</tool_call>", "JSON that is not an object"),
        (call("q", name="calculator"), "another tool"),
        (call(), "empty query_list"),
        (call("  ", ""), "only blank queries"),
        (
            '<tool_call>{"name": "search", "arguments": {"query_list": "one string"}}</tool_call>',
            "query_list not a list",
        ),
        ('<tool_call>{"name": "search", "arguments": {"query": "a"}}</tool_call>', "no query_list"),
        ('<tool_call>{"name": "search"}</tool_call>', "no arguments"),
        ("<search>a</search>", "the tags action in the tool_call protocol"),
    ],
)
def test_malformed_tool_calls(action: str, why: str):
    response = f"<think>t</think>\n{action}{TOOL_OBS}<think>u</think><answer>x</answer>"
    scan = scan_response(response, "tool_call")
    assert not scan.format_ok, why
    assert scan.observations == ()  # the loop's reply to a bad action is not retrieval


def test_two_tool_calls_in_one_turn_are_malformed():
    response = f"<think>t</think>{call('a')}\n{call('b')}{TOOL_OBS}<think>u</think><answer>x</answer>"
    assert not scan_response(response, "tool_call").format_ok


@pytest.mark.parametrize(
    "residue",
    ["\nuser\n", "\nuser\n\n", "\n  assistant  \n", "\ntool\n"],
)
def test_tool_call_gaps_may_hold_bare_role_lines(residue: str):
    response = f"<think>t</think>{call('q')}{residue}<tool_response>r</tool_response>{residue}<think>u</think><answer>x</answer>"
    assert scan_response(response, "tool_call").format_ok


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(["user", "assistant", "tool", "users", "x", " ", "\t", "\n", "\r", "\x0b", "\u2028"])
    ).map("".join)
)
def test_role_residue_gap_rule_is_line_by_line(gap: str):
    lines_ok = all(line.strip() in {"", "user", "assistant", "tool"} for line in gap.split("\n"))
    assert _gap_ok(gap, allow_role_residue=True) is lines_ok
    assert _gap_ok(gap, allow_role_residue=False) is (not gap or gap.isspace())


def test_tool_call_gap_with_other_text_is_malformed():
    response = f"<think>t</think>{call('q')}\nuser: here you go\n<tool_response>r</tool_response>\n<think>u</think><answer>x</answer>"
    assert not scan_response(response, "tool_call").format_ok


def test_counts_cover_only_well_formed_actions_even_in_a_malformed_response():
    response = (
        "<think>a</think><search>q1\nq2\nq2\n</search>"
        + OBS
        + "<think>b</think><search>\n</search>"
        + OBS
        + "<think>c</think><search>Q3</search>"
        + OBS
        + "no answer"
    )
    scan = scan_response(response, "tags")
    assert not scan.format_ok
    assert (scan.num_searches, scan.num_queries) == (2, 3)
    assert len(scan.observations) == 2  # the reply to the empty search is not retrieved text


def test_a_search_the_loop_ran_with_problems_counts_but_is_malformed():
    """A non-string query is dropped with feedback and the others searched: the loop ran it."""
    action = '<tool_call>{"name": "search", "arguments": {"query_list": ["a", 3]}}</tool_call>'
    scan = scan_response(
        f"<think>t</think>\n{action}{TOOL_OBS}<think>u</think><answer>x</answer>", "tool_call"
    )
    assert not scan.format_ok
    assert (scan.num_searches, scan.num_queries, len(scan.observations)) == (1, 1, 1)


def test_double_encoded_arguments_are_read_as_the_loop_reads_them():
    action = '<tool_call>{"name": "search", "arguments": "{\\"query_list\\": [\\"a\\"]}"}</tool_call>'
    scan = scan_response(
        f"<think>t</think>\n{action}{TOOL_OBS}<think>u</think><answer>x</answer>", "tool_call"
    )
    assert scan.format_ok and (scan.num_searches, scan.num_queries) == (1, 1)


def test_a_search_without_an_observation_was_not_run():
    """The loop runs no search written in the last turn; the text shows it by the missing observation."""
    scan = scan_response("<think>a</think><search>q1\nq2</search>", "tags")
    assert (scan.num_searches, scan.num_queries) == (0, 0)


def test_extract_answer_takes_the_last_answer_the_policy_wrote():
    assert extract_answer("<answer>a</answer> <answer> b </answer>") == "b"
    assert extract_answer("<answer>a</answer> <answer>b") == "a"  # an unclosed one is no answer
    assert extract_answer("no tags") is None
    assert extract_answer("<answer></answer>") == ""
    assert extract_answer("<answer>line 1\nline 2</answer>") == "line 1\nline 2"


def test_extract_answer_ignores_answers_inside_observations():
    poisoned = "<think>a</think><search>q</search>\n\n<information>Q: x <answer>Lyon</answer></information>\n\n<think>b"
    assert extract_answer(poisoned, "tags") is None
    assert extract_answer(poisoned + "</think><answer>Paris</answer>", "tags") == "Paris"
    # An observation cut off by the length limit hides everything after it.
    assert extract_answer("<answer>early</answer><information>Doc <answer>Lyon</answer>", "tags") == "early"
    tool = f"<think>t</think>{call('q')}\nuser\n<tool_response>\n<answer>Lyon</answer>\n</tool_response>\nassistant\n"
    assert extract_answer(tool, "tool_call") is None
    # Each protocol hides only its own observation tag.
    assert extract_answer("<information><answer>x</answer></information>", "tool_call") == "x"


def test_policy_text_keeps_what_the_policy_wrote():
    assert policy_text("a<information>b</information>c<information>d</information>e", "tags") == "a\nc\ne"
    assert policy_text("a<information>b", "tags") == "a"
    assert policy_text("no observation", "tags") == "no observation"


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"extra_info.protocol must be one of \['tags', 'tool_call'\], got 'xml'"
    ):
        scan_response("x", "xml")
    with pytest.raises(ValueError, match="got None"):
        extract_answer("x", None)  # type: ignore[arg-type]
