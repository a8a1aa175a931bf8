"""Parsing what the policy wrote, for both protocols: valid actions and every kind of malformed one."""

from __future__ import annotations

import json

import pytest

from expandsearch_verl.protocols import (
    STOP_STRINGS,
    UNLIMITED,
    QueryLimits,
    normalize_queries,
    parse_action,
    read_search,
    search_tool_schema,
    usage,
)

LIMITS = QueryLimits(max_queries=3, max_query_chars=40)


def call(arguments: object, name: str = "search") -> str:
    return (
        "<think>plan</think><tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"
    )


# ---------------------------------------------------------------------------------------------- tags
def test_tags_search_one_query_per_line():
    action = parse_action(
        "<think>two needs</think><search>\n Eiffel  Tower \n\nwho built it\n</search>", "tags", LIMITS
    )
    assert (action.kind, action.queries, action.problems) == ("search", ["Eiffel Tower", "who built it"], [])


def test_tags_answer_ends():
    action = parse_action("<think>known</think>\n<answer> Paris </answer>", "tags", LIMITS)
    assert action.kind == "answer" and not action.problems


def test_tags_first_closed_action_wins_and_tags_mentioned_in_thought_are_harmless():
    text = "<think>I will use <search> now</think><search>tower height</search><answer>x</answer>"
    assert parse_action(text, "tags", LIMITS).queries == ["tower height"]
    assert parse_action("<answer>a</answer><search>q</search>", "tags", LIMITS).kind == "answer"


def test_tags_nested_opening_takes_the_innermost():
    assert parse_action("<search>a<search>b</search>", "tags", LIMITS).queries == ["b"]


def test_tags_duplicates_are_dropped_case_insensitively_keeping_order():
    action = parse_action("<search>Paris\nparis\nLyon\n  PARIS  </search>", "tags", LIMITS)
    assert action.queries == ["Paris", "Lyon"] and not action.problems


def test_tags_too_many_queries_are_capped_with_a_note():
    action = parse_action("<search>a\nb\nc\nd\ne</search>", "tags", LIMITS)
    assert action.kind == "search" and action.queries == ["a", "b", "c"]
    assert action.problems == [
        "5 different queries were given but one search takes at most 3; only the first 3 were searched."
    ]


def test_tags_too_long_query_is_refused_the_rest_searched():
    action = parse_action("<search>" + "x" * 41 + "\nshort one</search>", "tags", LIMITS)
    assert action.queries == ["short one"]
    assert action.problems == ["query 1 has 41 characters, more than the limit of 40; it was not searched."]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<search>   \n </search>", "the search held no query."),
        ("<search>" + "y" * 90 + "</search>", "query 1 has 90 characters"),
        ("<search>unclosed query", "<search> was opened but never closed with </search>."),
        ("<answer>Paris", "<answer> was opened but never closed with </answer>."),
        ("I think it is Paris.", "the turn ended without a search or an answer."),
        ("", "the turn ended without a search or an answer."),
        ("query</search>", "</search> was written without an opening <search>."),
        ('<tool_call>{"name": "search"}</tool_call>', "the turn ended without a search or an answer."),
    ],
)
def test_tags_malformed_actions_say_what_is_wrong(text: str, problem: str):
    action = parse_action(text, "tags", LIMITS)
    assert action.kind == "invalid" and action.queries == []
    assert action.problems[0].startswith(problem)


# ----------------------------------------------------------------------------------------- tool_call
def test_tool_call_search():
    action = parse_action(call({"query_list": ["Eiffel Tower", "tower builder"]}), "tool_call", LIMITS)
    assert (action.kind, action.queries) == ("search", ["Eiffel Tower", "tower builder"])
    assert action.tool_call == {
        "name": "search",
        "arguments": {"query_list": ["Eiffel Tower", "tower builder"]},
    }
    assert action.content == "<think>plan</think>"


def test_tool_call_with_double_encoded_arguments():
    action = parse_action(call(json.dumps({"query_list": ["a"]})), "tool_call", LIMITS)
    assert action.queries == ["a"]


def test_tool_call_answer():
    assert parse_action("<answer> 1889 </answer>", "tool_call", LIMITS).kind == "answer"


def test_tool_call_non_string_items_are_skipped_with_a_note():
    action = parse_action(call({"query_list": ["a", 3, None, "b"]}), "tool_call", LIMITS)
    assert action.queries == ["a", "b"]
    assert action.problems == [
        "query 2 is int, not a string; it was skipped.",
        "query 3 is NoneType, not a string; it was skipped.",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '<tool_call>{"name": "search", "arguments": {"query_list": ["a"]}</tool_call>',
            "the <tool_call> body is not valid JSON",
        ),
        ("<tool_call>[1, 2]</tool_call>", "the <tool_call> body must be a JSON object"),
        (call({"query_list": ["a"]}, name="lookup"), "unknown tool 'lookup'; the only tool is 'search'."),
        (call({"query": "a"}), '"arguments" must be an object with "query_list"'),
        (call({"query_list": "a"}), '"arguments" must be an object with "query_list"'),
        (call("not json"), '"arguments" must be an object with "query_list"'),
        (call({"query_list": []}), "the search held no query."),
        (call({"query_list": ["  ", ""]}), "the search held no query."),
        (
            '<tool_call>{"name": "search", "arguments": {"query_list": ["a"]}}',
            "<tool_call> was opened but never closed",
        ),
        ("<search>a</search>", "the turn ended without a search or an answer."),
    ],
)
def test_tool_call_malformed_actions_say_what_is_wrong(text: str, problem: str):
    action = parse_action(text, "tool_call", LIMITS)
    assert action.kind == "invalid" and action.queries == []
    assert action.problems[0].startswith(problem), action.problems


def test_tool_call_keeps_a_call_to_answer_even_when_malformed():
    """The tool's reply needs a call in the chat history, whatever the model wrote inside it."""
    action = parse_action("<tool_call>{oops}</tool_call>", "tool_call", LIMITS)
    assert action.tool_call == {"name": "search", "arguments": {}}
    assert parse_action("no call at all", "tool_call", LIMITS).tool_call is None


# ------------------------------------------------------------------------------------------- helpers
def test_normalize_queries_collapses_whitespace():
    assert normalize_queries(["  a \t b\n", "A B"], LIMITS) == (["a b"], [])


@pytest.mark.parametrize(
    ("protocol", "body", "queries"),
    [
        ("tags", " Who built it? \n\nwho  built\tit?\n tower ", ["Who built it?", "tower"]),
        ("tags", "Straße\nSTRASSE\nstrasse", ["Straße"]),  # casefold, not lower: ß is ss
        ("tags", "one query", ["one query"]),
        ("tags", "\n \n", []),
        ("tool_call", '{"name": "search", "arguments": {"query_list": [" a ", "A", "b"]}}', ["a", "b"]),
        ("tool_call", '{"name": "search", "arguments": {"query_list": []}}', []),
        ("tool_call", "[" * 100_000, []),  # deeply nested JSON must not raise RecursionError
        ("tool_call", '{"name": "search", "arguments": "' + "[" * 100_000 + '"}', []),
    ],
)
def test_read_search_is_what_both_the_loop_and_the_reward_read(protocol: str, body: str, queries):
    action = read_search(protocol, body, UNLIMITED)
    assert action.queries == queries and action.kind == ("search" if queries else "invalid")


def test_usage_names_the_protocol_syntax_and_the_limit():
    assert "<search> one query per line, at most 3 </search>" in usage("tags", LIMITS)
    text = usage("tool_call", LIMITS)
    assert '"query_list"' in text and "at most 3 queries" in text and "<answer>" in text


def test_stop_strings_end_every_action():
    assert STOP_STRINGS == {"tags": ["</search>", "</answer>"], "tool_call": ["</tool_call>", "</answer>"]}


def test_search_tool_schema_is_an_openai_function_with_the_cap():
    schema = search_tool_schema(5)
    parameters = schema["function"]["parameters"]
    assert schema["type"] == "function" and schema["function"]["name"] == "search"
    assert parameters["required"] == ["query_list"]
    assert parameters["properties"]["query_list"]["items"] == {"type": "string"}
    assert parameters["properties"]["query_list"]["maxItems"] == 5
    json.dumps(schema)
