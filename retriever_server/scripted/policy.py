"""A rule-based search policy for the `tags` and `tool_call` protocols, and vLLM's stop-string cut.

It reads the decoded context: with no observation yet, it searches the question (after data_prep's
"Question: ") in two phrasings; after one, it answers with the title of the first document shown
(or the first words of a summary, or "unknown" after a failed search). Which protocol it writes
follows from the stop strings the loop passes (`</tool_call>` for `tool_call`, else `</search>`).
It is deterministic, so tests and benchmarks reach the search path, the observation and a scored
answer without a model that writes the format.
"""

from __future__ import annotations

import json
import re
from typing import Any

QUESTION = re.compile(r"Question: (.*?)(?:<\|im_end\|>|\n|$)")  # data_prep's prompt ends with it
_TITLE = re.compile(r"Title: ([^)\n]*)\)")


def turn_text(context: str, stops: list[str]) -> str:
    """What the rule-based policy writes next, given the decoded context so far."""
    questions = QUESTION.findall(context)
    question = questions[-1].strip() if questions else "the question"
    tool_call = "</tool_call>" in stops
    opening = "<tool_response>" if tool_call else "<information>"
    observations = context.split(question, 1)[-1].split(opening)[1:]
    if not observations:
        variants = [question, " ".join(word for word in question.split() if len(word) > 3) or question]
        if tool_call:
            call = json.dumps({"name": "search", "arguments": {"query_list": variants}})
            return f"<think>I should search.</think>\n<tool_call>{call}</tool_call>"
        return "<think>I should search.</think>\n<search>\n" + "\n".join(variants) + "\n</search>"
    last = observations[-1]
    titles = _TITLE.findall(last)
    if titles:
        answer = titles[0].strip()
    elif "The search failed" in last:
        answer = "unknown"
    else:
        answer = " ".join(re.sub(r"<[^>]*>", " ", last).split()[:3]) or "unknown"
    return f"<think>I found it.</think>\n<answer> {answer} </answer>"


def engine_cut(tokenizer: Any, ids: list[int], stops: list[str]) -> tuple[list[int], str | None]:
    """`ids` up to the token whose addition makes the text contain a stop string (vLLM's rule), and that string."""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=False)
        found = [stop for stop in stops if stop in text]
        if found:
            return ids[:end], min(found, key=text.find)
    return ids, None
