"""Read a decoded multi-turn response: the final answer, format validity, and the searches made.

The reward sees the response part of the trajectory only, decoded with `skip_special_tokens=True`:
the policy's turns and, between them, the observations the agent loop inserted. Its grammar, per
action protocol (docs/design.md, "Action protocols"):

    tags:       (<think>…</think> <search>q1\\nq2</search> <information>…</information>)*
                <think>…</think> <answer>…</answer>
    tool_call:  (<think>…</think> <tool_call>{"name": "search", "arguments": {"query_list": [..]}}</tool_call>
                 user <tool_response>…</tool_response> assistant)*
                <think>…</think> <answer>…</answer>

A response is *well-formed* when it follows its grammar exactly: every turn opens with a think
block, every search carries at least one query (valid JSON for `tool_call`), an observation comes
only right after a search (where the loop puts it; the loop's reply to a malformed action is an
observation too, but the action before it is not well-formed), no protocol tag nests inside
another block, there is exactly one answer, it is not blank, and it ends the response. Between
blocks only white space is allowed, plus, for `tool_call`, the bare role lines (`user`,
`assistant`, `tool`) that special-token stripping leaves of the chat turns around a tool message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

Protocol = Literal["tags", "tool_call"]
PROTOCOLS: tuple[Protocol, ...] = ("tags", "tool_call")
DEFAULT_PROTOCOL: Protocol = "tags"

# Chat-role lines that `skip_special_tokens` decoding leaves of `<|im_start|>user` etc.
# A gap made only of such lines (each may be blank), split on "\n" like the chat template writes them.
# Written so that no two quantifiers compete for the same spaces: linear time on any gap.
_ROLE_LINE = r"[^\S\n]*(?:(?:user|assistant|tool)[^\S\n]*)?"
_ROLE_RESIDUE = re.compile(rf"{_ROLE_LINE}(?:\n{_ROLE_LINE})*")


@dataclass(frozen=True)
class _Grammar:
    action: str  # tag of the search action the policy writes
    observation: str  # tag of the block the agent loop inserts after it
    allow_role_residue: bool
    tag: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        names = "|".join(("think", self.action, self.observation, "answer"))
        object.__setattr__(self, "tag", re.compile(rf"<(/?)({names})>"))


_GRAMMARS: dict[str, _Grammar] = {
    "tags": _Grammar(action="search", observation="information", allow_role_residue=False),
    "tool_call": _Grammar(action="tool_call", observation="tool_response", allow_role_residue=True),
}


def grammar_for(protocol: str) -> _Grammar:
    """The grammar of `protocol`; a clear error for anything else (it comes from the dataset)."""
    try:
        return _GRAMMARS[protocol]
    except (KeyError, TypeError):
        raise ValueError(f"extra_info.protocol must be one of {list(PROTOCOLS)}, got {protocol!r}") from None


def parse_search_queries(protocol: str, content: str) -> list[str] | None:
    """The queries of one search action: stripped, de-duplicated case-insensitively, in order.

    `tags`: one query per line. `tool_call`: the hermes JSON call
    `{"name": "search", "arguments": {"query_list": [...]}}`. Returns None for a malformed action
    (bad JSON, another tool, a non-string query) and for one without any non-blank query.
    """
    candidates = content.split("\n") if protocol == "tags" else _tool_call_queries(content)
    if candidates is None:
        return None
    queries: dict[str, str] = {}
    for query in candidates:
        query = query.strip()
        if query:
            queries.setdefault(query.lower(), query)
    return list(queries.values()) or None


def _tool_call_queries(content: str) -> list[str] | None:
    try:
        call = json.loads(content)
        query_list = call["arguments"]["query_list"] if call.get("name") == "search" else None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if not isinstance(query_list, list) or not all(isinstance(query, str) for query in query_list):
        return None
    return query_list


def _gap_ok(gap: str, allow_role_residue: bool) -> bool:
    if not gap or gap.isspace():
        return True
    return allow_role_residue and _ROLE_RESIDUE.fullmatch(gap) is not None


_CLOSING = {
    name: f"</{name}>" for name in ("think", "search", "information", "answer", "tool_call", "tool_response")
}

# What the grammar expects next.
_THINK, _ACTION_OR_ANSWER, _OBSERVATION, _END = range(4)


@dataclass(frozen=True)
class ResponseScan:
    """What one pass over a response finds."""

    format_ok: bool
    num_searches: int  # well-formed search actions (at least one query)
    num_queries: int  # their queries, after stripping and case-insensitive de-duplication
    observations: tuple[str, ...]  # text of the observations that answer those searches


def scan_response(text: str, protocol: str = DEFAULT_PROTOCOL) -> ResponseScan:
    """One left-to-right pass over the blocks of `text` (module docstring: the grammar)."""
    grammar = grammar_for(protocol)
    well_formed = True
    expected = _THINK
    searches = queries = 0
    observations: list[str] = []
    answered_search = False  # the block before an observation was a well-formed search
    pos, end_of_text = 0, len(text)
    while True:
        match = grammar.tag.search(text, pos)
        gap_end = match.start() if match else end_of_text
        if gap_end > pos and not _gap_ok(text[pos:gap_end], grammar.allow_role_residue):
            well_formed = False
        if match is None:
            break
        closing, name = match.groups()
        pos = match.end()
        if closing:  # a closing tag without its opening tag
            well_formed = False
            continue
        close_at = text.find(_CLOSING[name], pos)
        if close_at < 0:  # cut off by the length limit, or never closed
            well_formed = False
            content, next_pos = text[pos:], end_of_text
        else:
            content, next_pos = text[pos:close_at], close_at + len(name) + 3
        pos = next_pos

        if name == grammar.observation:  # inserted by the loop: its content is not policy text
            if expected != _OBSERVATION:
                well_formed = False
            elif answered_search:
                observations.append(content)
            expected = _THINK
            continue
        if "<" in content and grammar.tag.search(content):
            well_formed = False
        if name == "think":
            well_formed &= expected == _THINK
            expected = _ACTION_OR_ANSWER
        elif name == "answer":
            well_formed &= expected == _ACTION_OR_ANSWER and bool(content.strip())
            expected = _END
        else:  # the search action
            well_formed &= expected == _ACTION_OR_ANSWER
            query_list = parse_search_queries(protocol, content)
            answered_search = query_list is not None
            if query_list is None:
                well_formed = False
            else:
                searches += 1
                queries += len(query_list)
            expected = _OBSERVATION
    return ResponseScan(well_formed and expected == _END, searches, queries, tuple(observations))


def policy_text(text: str, protocol: str = DEFAULT_PROTOCOL) -> str:
    """`text` with the observation blocks cut out (an unclosed one runs to the end of the text)."""
    grammar = grammar_for(protocol)
    opening, closing = f"<{grammar.observation}>", f"</{grammar.observation}>"
    start = text.find(opening)
    if start < 0:
        return text
    parts, pos = [], 0
    while start >= 0:
        parts.append(text[pos:start])
        end = text.find(closing, start + len(opening))
        if end < 0:
            return "\n".join(parts)
        pos = end + len(closing)
        start = text.find(opening, pos)
    parts.append(text[pos:])
    return "\n".join(parts)


def extract_answer(text: str, protocol: str = DEFAULT_PROTOCOL) -> str | None:
    """Content of the last `<answer>…</answer>` the policy wrote, stripped; None when there is none.

    The same rule as verl's `search_r1_like_qa_em.extract_solution` (the last of the non-overlapping
    matches of `<answer>(.*?)</answer>`), in linear time on any text, and with the observation
    blocks removed first: an `<answer>` inside a retrieved passage or a squeezer summary is not the
    policy's answer.
    """
    text = policy_text(text, protocol)
    answer, pos = None, 0
    while (start := text.find("<answer>", pos)) >= 0:
        end = text.find("</answer>", start + 8)
        if end < 0:  # no later <answer> can be closed either
            break
        answer, pos = text[start + 8 : end], end + 9
    return None if answer is None else answer.strip()
