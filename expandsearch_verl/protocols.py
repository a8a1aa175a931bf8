"""The two action protocols: what the policy writes, and how we read it (the loop and the reward).

`tags` (Search-R1 family): `<search>` with one query per line `</search>`, or `<answer> … </answer>`;
the loop answers a search inside `<information>`.
`tool_call` (hermes, chat models): `<tool_call>{"name": "search", "arguments": {"query_list": [...]}}
</tool_call>`, or `<answer> … </answer>`; the loop answers with a chat `tool` message, which the
chat template wraps in `<tool_response>`.

`parse_action` reads the decoded text of one assistant turn and never raises: whatever the model
wrote becomes an `Action`, and everything wrong with it becomes a sentence in `Action.problems`
that the observation shows the model. The action is the first closing tag's (generation stops at
it), opened by the nearest opening tag before it, so a tag mentioned inside `<think>` is harmless.
`read_search` reads one search action's body; the reward's grammar (response_format.py) reads the
searches of a whole response with it, so both count the same queries.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

Protocol = Literal["tags", "tool_call"]
PROTOCOLS: tuple[Protocol, ...] = ("tags", "tool_call")
DEFAULT_PROTOCOL: Protocol = "tags"
SEARCH_TOOL_NAME = "search"

# Per protocol: the tag of the search action the policy writes, and of the observation after it.
SEARCH_TAG = {"tags": "search", "tool_call": "tool_call"}
OBSERVATION_TAG = {"tags": "information", "tool_call": "tool_response"}
_ACTION_TAGS = {protocol: (SEARCH_TAG[protocol], "answer") for protocol in PROTOCOLS}
# Generation stops at the end of an action; the engine returns the tokens that completed it.
STOP_STRINGS = {protocol: [f"</{tag}>" for tag in tags] for protocol, tags in _ACTION_TAGS.items()}
_CLOSING = {protocol: re.compile("</(" + "|".join(tags) + ")>") for protocol, tags in _ACTION_TAGS.items()}


@dataclass(frozen=True)
class QueryLimits:
    """What one search may carry."""

    max_queries: int
    max_query_chars: int


# What the reward reads a bare response with: the loop's caps are settings it cannot see.
UNLIMITED = QueryLimits(max_queries=sys.maxsize, max_query_chars=sys.maxsize)


@dataclass
class Action:
    """One parsed assistant turn.

    kind: "answer" ends the trajectory; "search" runs `queries` (possibly with `problems` about the
    parts that were dropped); "invalid" runs nothing and shows `problems` to the model.
    tool_call: the call as written (tool_call protocol), for the chat history; None otherwise.
    """

    kind: Literal["answer", "search", "invalid"]
    queries: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tool_call: dict[str, Any] | None = None
    content: str = ""


def parse_action(text: str, protocol: str, limits: QueryLimits) -> Action:
    """Read the action in one turn's decoded text (`protocol` is "tags" or "tool_call")."""
    closing = _CLOSING[protocol].search(text)
    if closing is None:
        return Action("invalid", problems=[_missing_action(text, protocol)], content=text)
    tag = closing.group(1)
    start = text.rfind(f"<{tag}>", 0, closing.start())
    if start < 0:
        return Action("invalid", problems=[f"</{tag}> was written without an opening <{tag}>."], content=text)
    body = text[start + len(tag) + 2 : closing.start()]
    if tag == "answer":
        return Action("answer", content=text)
    return read_search(protocol, body, limits, content=text if protocol == "tags" else text[:start])


def read_search(protocol: str, body: str, limits: QueryLimits, content: str = "") -> Action:
    """The search action whose text between its tags is `body`: "search" (maybe with problems about
    dropped parts) or "invalid". `content` is the turn's text kept for the chat history."""
    if protocol == "tags":
        queries, problems = normalize_queries(body.split("\n"), limits)
        return _search_or_invalid(queries, problems, None, content)
    return _parse_tool_call(body, limits, content)


def normalize_queries(raw_queries: list[Any], limits: QueryLimits) -> tuple[list[str], list[str]]:
    """Strip, drop empty, refuse over-long, de-duplicate (case-insensitive), cap the count.

    Returns the queries to search, in the model's order, and one sentence per problem.
    """
    queries: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(raw_queries, start=1):
        if not isinstance(raw, str):
            problems.append(f"query {number} is {type(raw).__name__}, not a string; it was skipped.")
            continue
        query = " ".join(raw.split())
        if not query:
            continue
        if len(query) > limits.max_query_chars:
            problems.append(
                f"query {number} has {len(query)} characters, more than the limit of "
                f"{limits.max_query_chars}; it was not searched."
            )
            continue
        key = query.casefold()
        if key not in seen:
            seen.add(key)
            queries.append(query)
    if len(queries) > limits.max_queries:
        problems.append(
            f"{len(queries)} different queries were given but one search takes at most {limits.max_queries}; "
            f"only the first {limits.max_queries} were searched."
        )
        del queries[limits.max_queries :]
    return queries, problems


def usage(protocol: str, limits: QueryLimits) -> str:
    """How to act, in one sentence, appended to every problem report."""
    if protocol == "tags":
        search = f"<search> one query per line, at most {limits.max_queries} </search>"
    else:
        search = (
            f'<tool_call>{{"name": "{SEARCH_TOOL_NAME}", "arguments": {{"query_list": ["...", "..."]}}}}</tool_call> '
            f"with at most {limits.max_queries} queries"
        )
    return f"To search, write {search}; to finish, write <answer> your answer </answer>."


def search_tool_schema(max_queries: int) -> dict[str, Any]:
    """The OpenAI-style schema of the `search` tool that the chat template lists (tool_call protocol)."""
    return {
        "type": "function",
        "function": {
            "name": SEARCH_TOOL_NAME,
            "description": (
                "Search a Wikipedia corpus with several phrasings of one information need at once; "
                "the passages found for all of them come back together."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "query_list": {
                        "type": "array",
                        "items": {"type": "string"},
                        "maxItems": max_queries,
                        "description": (
                            f"Up to {max_queries} different queries for the same need: paraphrases, "
                            "sub-questions, keyword forms."
                        ),
                    }
                },
                "required": ["query_list"],
            },
        },
    }


def _search_or_invalid(
    queries: list[str], problems: list[str], tool_call: dict | None, content: str
) -> Action:
    if queries:
        return Action("search", queries, problems, tool_call, content)
    return Action("invalid", [], problems or ["the search held no query."], tool_call, content)


def _missing_action(text: str, protocol: str) -> str:
    for tag in _ACTION_TAGS[protocol]:
        if f"<{tag}>" in text:
            return f"<{tag}> was opened but never closed with </{tag}>."
    return "the turn ended without a search or an answer."


def _parse_tool_call(body: str, limits: QueryLimits, content: str) -> Action:
    # The call is kept for the chat history even when malformed, so the tool reply has a call to answer.
    call: dict[str, Any] = {"name": SEARCH_TOOL_NAME, "arguments": {}}
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as error:
        return Action(
            "invalid",
            problems=[f"the <tool_call> body is not valid JSON ({error})."],
            tool_call=call,
            content=content,
        )
    if not isinstance(parsed, dict):
        problem = 'the <tool_call> body must be a JSON object {"name": ..., "arguments": {...}}.'
        return Action("invalid", problems=[problem], tool_call=call, content=content)
    name, arguments = parsed.get("name"), parsed.get("arguments")
    if name != SEARCH_TOOL_NAME:
        problem = f"unknown tool {name!r}; the only tool is {SEARCH_TOOL_NAME!r}."
        return Action("invalid", problems=[problem], tool_call=call, content=content)
    if isinstance(arguments, str):  # some models double-encode the arguments
        with contextlib.suppress(json.JSONDecodeError, RecursionError):
            arguments = json.loads(arguments)
    if not isinstance(arguments, dict) or not isinstance(arguments.get("query_list"), list):
        problem = '"arguments" must be an object with "query_list", a list of query strings.'
        return Action("invalid", problems=[problem], tool_call=call, content=content)
    call["arguments"] = arguments
    queries, problems = normalize_queries(arguments["query_list"], limits)
    return _search_or_invalid(queries, problems, call, content)
