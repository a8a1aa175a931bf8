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

import torch

from retriever_server.scripted.policy import QUESTION as _QUESTION
from retriever_server.scripted.policy import turn_text

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
        return self._engine_cut(self.tokenizer.encode(text, add_special_tokens=False), stop)[:max_tokens]

    def _own_text(self, context: str) -> str:
        """The trajectory after the user's question (the system prompt mentions <think> too)."""
        questions = _QUESTION.findall(context)
        return context.split(questions[-1], 1)[-1] if questions else context

    def _engine_cut(self, token_ids: list[int], stop: tuple[str, ...]) -> list[int]:
        """Keep tokens up to the one that completes the first stop string, as vLLM returns them."""
        for end in range(1, len(token_ids) + 1):
            if any(s in self.tokenizer.decode(token_ids[:end], skip_special_tokens=False) for s in stop):
                return token_ids[:end]
        return token_ids


@torch.inference_mode()
def score(model: Any, prompt_ids: list[int], token_ids: list[int], temperature: float) -> list[float]:
    """Log-probs of `token_ids` after `prompt_ids` in one forward pass: log_softmax(logits / temperature),
    the raw logits when greedy, as the batched generator reports them and verl's actor computes them."""
    if not token_ids:
        return []
    logits = model(input_ids=torch.tensor([prompt_ids + token_ids])).logits[0].float()
    scale = temperature if temperature > 0 else 1.0
    steps = torch.log_softmax(logits[len(prompt_ids) - 1 : -1] / scale, dim=-1)
    return steps.gather(1, torch.tensor(token_ids)[:, None])[:, 0].tolist()
