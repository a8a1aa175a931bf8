"""Prompts, in the project's own words: strategy (`expandsearch`, `searchr1`) x protocol (`tags`, `tool_call`).

The instructions go in the system message and the question alone in the user message: the
instructions are identical across rows (parquet stores them once per page) and the agent loop sees
the question as the user turn. The action syntax must match what the agent loop parses
(`expandsearch_verl`): `tags` = one query per line inside <search>...</search>, results in
<information>...</information>; `tool_call` = a hermes tool call of the `search` tool with a
`query_list`, results as the tool's response. Both end with <answer>...</answer>.
"""

from __future__ import annotations

from expandsearch_verl.protocols import PROTOCOLS

STRATEGIES = ("expandsearch", "searchr1")
MAX_VARIANTS = 10

_ROLE = (
    "You answer questions by searching a Wikipedia corpus. You may search several times before "
    "answering; search whenever you are not sure of a fact."
)

_THINK = "Before every action, reason step by step inside <think> and </think>."

_ANSWER = (
    "When you are confident, give the final answer inside <answer> and </answer>: only the answer, "
    "in a few words, with no explanation, for example <answer> Ada Lovelace </answer>."
)

_SEARCH = {
    ("expandsearch", "tags"): (
        "To search, write <search>, then {n} different queries, one per line, then </search>, like this:\n"
        "<search>\n{lines}\n</search>\n"
        "Make the queries complement each other: rephrase the question, split it into the "
        "sub-questions it depends on, or list its key names and terms. They are searched together, "
        "and what the corpus says about them comes back between <information> and </information>."
    ),
    ("searchr1", "tags"): (
        "To search, write one query between <search> and </search>. The best matching passages "
        "come back between <information> and </information>."
    ),
    ("expandsearch", "tool_call"): (
        "To search, call the search tool once with {n} different queries in its query_list, like this:\n"
        '<tool_call>{{"name": "search", "arguments": {{"query_list": [{examples}]}}}}</tool_call>\n'
        "Make the queries complement each other: rephrase the question, split it into the "
        "sub-questions it depends on, or list its key names and terms. Put them all in one call; "
        "they are searched together, and what the corpus says about them comes back as the tool's response."
    ),
    ("searchr1", "tool_call"): (
        "To search, call the search tool with one query, like this:\n"
        '<tool_call>{{"name": "search", "arguments": {{"query_list": ["your query"]}}}}</tool_call>\n'
        "The best matching passages come back as the tool's response."
    ),
}


def system_prompt(strategy: str, protocol: str, num_variants: int = 3) -> str:
    """The instructions for one strategy/protocol pair; `num_variants` is N for `expandsearch`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: unknown {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not 1 <= num_variants <= MAX_VARIANTS:
        raise ValueError(f"num_variants: {num_variants} is outside 1..{MAX_VARIANTS}")
    queries = [f"query {i}" for i in range(1, num_variants + 1)]
    examples = ", ".join(f'"{q}"' for q in queries)
    search = _SEARCH[strategy, protocol].format(n=num_variants, examples=examples, lines="\n".join(queries))
    return "\n\n".join((_ROLE, _THINK, search, _ANSWER))


def render_prompt(question: str, system: str) -> list[dict[str, str]]:
    """The chat messages of one row: the shared instructions, then the question."""
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Question: {question}"}]
