"""Stand-ins for verl's `LLMServerClient.generate` (token ids in, `TokenOutput` out) that record calls.

`ScriptedGenerator` replays scripted turns the way an engine emits them (cut after the token that
completes a stop string, at most `max_tokens`); `RulePolicyGenerator` is a rule-based policy for
whole datasets; `HFGenerator` samples from a real Hugging Face causal LM with `model.generate`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import torch
from verl.workers.rollout.replica import TokenOutput


@dataclass
class GenerateCall:
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    token_ids: list[int]
    log_probs: list[float]


class RecordingGenerator:
    """Records every call, so tests can check what the loop did with the tokens.

    A plain class on purpose: hydra's `instantiate` would turn a dataclass argument into a config.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.calls: list[GenerateCall] = []

    async def generate(
        self,
        request_id: str,
        *,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: Any = None,
        video_data: Any = None,
        audio_data: Any = None,
        mm_processor_kwargs: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        token_ids, log_probs = self._sample(list(prompt_ids), dict(sampling_params))
        self.calls.append(GenerateCall(list(prompt_ids), dict(sampling_params), token_ids, log_probs))
        return TokenOutput(token_ids=token_ids, log_probs=log_probs, stop_reason="completed")

    def _sample(
        self, prompt_ids: list[int], sampling_params: dict[str, Any]
    ) -> tuple[list[int], list[float]]:
        raise NotImplementedError

    def _emit(self, text: str, sampling_params: dict[str, Any]) -> tuple[list[int], list[float]]:
        """`text` as an engine would return it: cut at a stop string and at `max_tokens`."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        ids = engine_stop(self.tokenizer, ids, sampling_params.get("stop") or [])[
            : sampling_params["max_tokens"]
        ]
        start = sum(len(call.token_ids) for call in self.calls)
        return ids, [-0.001 * (start + k + 1) for k in range(len(ids))]  # distinct, to check alignment


class ScriptedGenerator(RecordingGenerator):
    """Replays `turns` (text; the last one repeats) as an engine would emit them."""

    def __init__(self, tokenizer: Any, turns: list[str]):
        super().__init__(tokenizer)
        self.turns = turns

    def _sample(self, prompt_ids, sampling_params):
        return self._emit(self.turns[min(len(self.calls), len(self.turns) - 1)], sampling_params)


class RulePolicyGenerator(RecordingGenerator):
    """A rule-based policy for whole datasets: searches the question in two phrasings, then answers
    with the title of the first document it read (or the first words of a summary)."""

    def _sample(self, prompt_ids, sampling_params):
        context = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        question, trajectory = context.split("Question: ")[-1].split("<|im_end|>", 1)
        tool_call = "</tool_call>" in sampling_params["stop"]
        read = trajectory.split("<tool_response>" if tool_call else "<information>")[1:]
        if not read:
            variants = [question.strip(), " ".join(word for word in question.split() if len(word) > 3)]
            if tool_call:
                call = json.dumps({"name": "search", "arguments": {"query_list": variants}})
                return self._emit(
                    f"<think>I should search.</think><tool_call>{call}</tool_call>", sampling_params
                )
            search = "<search>" + "\n".join(variants) + "</search>"
            return self._emit("<think>I should search.</think>" + search, sampling_params)
        titles = re.findall(r"Title: ([^)]*)\)", read[-1])
        answer = titles[0] if titles else " ".join(read[-1].split()[:3])
        return self._emit(f"<think>Found it.</think><answer> {answer} </answer>", sampling_params)


def engine_stop(tokenizer: Any, ids: list[int], stops: list[str]) -> list[int]:
    """Cut after the token whose addition makes the decoded text contain a stop string (vLLM's rule)."""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=False)
        if any(stop in text for stop in stops):
            return ids[:end]
    return ids


class HFGenerator(RecordingGenerator):
    """A real causal LM behind `generate`: sampling, stop strings and log-probs from transformers."""

    def __init__(self, tokenizer: Any, model: Any, seed: int = 0):
        super().__init__(tokenizer)
        self.model, self.seed = model, seed

    def _sample(self, prompt_ids, sampling_params):
        torch.manual_seed(self.seed + len(self.calls))
        temperature = sampling_params.get("temperature", 1.0)
        with torch.no_grad():
            out = self.model.generate(
                torch.tensor([prompt_ids]),
                attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                max_new_tokens=sampling_params["max_tokens"],
                do_sample=temperature > 0,
                temperature=temperature or None,
                top_p=sampling_params.get("top_p", 1.0),
                top_k=max(sampling_params.get("top_k", -1), 0),
                stop_strings=sampling_params.get("stop"),
                tokenizer=self.tokenizer,
                return_dict_in_generate=True,
                output_scores=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        token_ids = out.sequences[0, len(prompt_ids) :].tolist()
        return token_ids, [float(x) for x in scores[0, : len(token_ids)]]
