"""Stand-ins for verl's `LLMServerClient.generate` (token ids in, `TokenOutput` out) that record calls.

`ScriptedGenerator` replays scripted turns the way an engine emits them (cut after the token that
completes a stop string, at most `max_tokens`); `RulePolicyGenerator` is the scripted rule-based
policy for whole datasets; `HFGenerator` samples from a real Hugging Face causal LM through the
project's batched generator (`retriever_server.generation`, what the local policy and the CPU
rollout run on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verl.workers.rollout.replica import TokenOutput

from retriever_server.generation import BatchedGenerator, SamplingParams
from retriever_server.scripted.policy import engine_cut, turn_text


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
        ids = engine_cut(self.tokenizer, ids, sampling_params.get("stop") or [])[0][
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
    """A rule-based policy for whole datasets (`retriever_server.scripted.policy`, the scripted policy
    server's): searches the question in two phrasings, then answers with the first title it read."""

    def _sample(self, prompt_ids, sampling_params):
        context = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        return self._emit(turn_text(context, list(sampling_params.get("stop") or [])), sampling_params)


class HFGenerator(RecordingGenerator):
    """A real causal LM behind `generate`: sampling (seeded per call), stop strings and log-probs."""

    def __init__(self, tokenizer: Any, model: Any, seed: int = 0):
        super().__init__(tokenizer)
        self.engine, self.seed = BatchedGenerator(model, tokenizer), seed

    def _sample(self, prompt_ids, sampling_params):
        request = {
            "temperature": 1.0,
            **sampling_params,
            "seed": self.seed + len(self.calls),
            "logprobs": True,
        }
        (output,) = self.engine.generate_batch([prompt_ids], [SamplingParams.from_request(request)])
        return output.token_ids, output.log_probs
