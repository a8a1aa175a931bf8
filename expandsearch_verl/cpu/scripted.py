"""A deterministic search policy behind the rollout interface, for tests of the real trainer.

A tiny random model never writes `<search>`, so a test through verl's trainer would never reach
the retriever. This policy writes the turns of `retriever_server.scripted.policy` (search the question
in two phrasings, then answer with the title of the first document shown), and makes every other
copy of a prompt *sloppy*: it leaves out the `<think>` blocks, which the reward's format check
marks down. So the copies of one GRPO group always earn different rewards (1.0 or 0.2 against 0.8
or 0.1), and the answers are right or wrong as the retriever's first title is. Its log-probs come
from the served model (which receives the actor's weights), so the trainer's rollout-vs-actor
log-prob check stays meaningful.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from retriever_server.scripted.policy import QUESTION, engine_cut, turn_text

_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


class ScriptedPolicy:
    """`turn(prompt_ids, stop)` -> the token ids of the next turn (cut at a stop string like an engine)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.copies: Counter[tuple[int, ...]] = Counter()  # first turns seen per prompt

    def turn(self, prompt_ids: list[int], stop: tuple[str, ...], max_tokens: int) -> list[int]:
        context = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        text = turn_text(context, list(stop))
        if "<answer>" not in text:  # a first turn: this copy's place in its group decides
            key = tuple(prompt_ids)
            sloppy = self.copies[key] % 2 == 1
            self.copies[key] += 1
        else:  # later turns keep the copy's habit, read from what it wrote
            sloppy = "<think>" not in self._own_text(context)
        if sloppy:
            text = _THINK.sub("", text)
        token_ids, _ = engine_cut(
            self.tokenizer, self.tokenizer.encode(text, add_special_tokens=False), list(stop)
        )
        return token_ids[:max_tokens]

    def _own_text(self, context: str) -> str:
        """The trajectory after the user's question (the system prompt mentions <think> too)."""
        questions = QUESTION.findall(context)
        return context.split(questions[-1], 1)[-1] if questions else context
