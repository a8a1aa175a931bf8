"""One sequence at a time through a Hugging Face causal LM: token ids in, token ids and log-probs out.

The semantics are vLLM's, which the agent loop was written against: generation stops at
`max_tokens`, at an end-of-sequence id (the generation config's, which may differ from the
tokenizer's: SmolLM2's converted tokenizer says `<|im_start|>`, its generation config `<|im_end|>`),
or right after the token that completes a `stop` string (that token is returned, the text is the
caller's to parse). `temperature` 0 is greedy. A token's log-prob is `log_softmax(logits /
temperature)` before top-k/top-p filtering, which is what verl's actor computes as the old
log-prob, so rollout and actor agree when they hold the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# The sampling parameters the agent loop and verl send; anything else is refused with its name.
_KNOWN = {
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "stop",
    "logprobs",
    "repetition_penalty",
    "min_tokens",
}


class SamplingError(ValueError):
    """A sampling parameter out of range, named with its value and limit."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1: off (vLLM's convention)
    stop: tuple[str, ...] = field(default_factory=tuple)
    logprobs: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any], room: int) -> Sampling:
        """Check verl's `sampling_params`; `room` = tokens left in the model's context."""
        unknown = sorted(set(params) - _KNOWN)
        if unknown:
            raise SamplingError(f"sampling_params: unsupported key(s) {unknown}; known: {sorted(_KNOWN)}")
        max_tokens = params.get("max_tokens")
        max_tokens = room if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise SamplingError(f"sampling_params.max_tokens must be an integer >= 1, got {max_tokens!r}")
        temperature = float(params.get("temperature", 1.0))
        if not 0.0 <= temperature <= 10.0:
            raise SamplingError(f"sampling_params.temperature must be in [0, 10], got {temperature}")
        top_p = float(params.get("top_p", 1.0))
        if not 0.0 < top_p <= 1.0:
            raise SamplingError(f"sampling_params.top_p must be in (0, 1], got {top_p}")
        top_k = int(params.get("top_k", -1))
        if top_k == 0 or top_k < -1:
            raise SamplingError(f"sampling_params.top_k must be -1 (off) or >= 1, got {top_k}")
        if float(params.get("repetition_penalty", 1.0)) != 1.0:
            raise SamplingError("sampling_params.repetition_penalty: only 1.0 is supported by the HF rollout")
        stop = params.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        if not all(isinstance(s, str) and s for s in stop):
            raise SamplingError(f"sampling_params.stop must be non-empty strings, got {stop!r}")
        return cls(
            min(max_tokens, room), temperature, top_p, top_k, tuple(stop), bool(params.get("logprobs"))
        )


@dataclass
class Generated:
    token_ids: list[int]
    log_probs: list[float]
    stop_reason: str  # "completed" (eos or stop string) or "length"


def end_token_ids(model_dir: str, model: Any, tokenizer: Any) -> set[int]:
    """The ids that end a turn: the generation config's, else the model config's, else the tokenizer's."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) - {None}


def _pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    if sampling.temperature == 0.0:
        return int(torch.argmax(logits))
    scores = logits / sampling.temperature
    if sampling.top_k > 0:
        kth = torch.topk(scores, min(sampling.top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= sampling.top_p  # keep the token crossing top_p
        scores = scores.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator))


def _log_prob(logits: torch.Tensor, token: int, temperature: float) -> float:
    scale = temperature if temperature > 0 else 1.0
    return float(torch.log_softmax(logits / scale, dim=-1)[token])


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    sampling: Sampling,
    end_ids: set[int],
    generator: torch.Generator,
) -> Generated:
    """Sample up to `sampling.max_tokens` tokens after `prompt_ids` with a KV cache."""
    token_ids: list[int] = []
    log_probs: list[float] = []
    inputs = torch.tensor([prompt_ids])
    past = None
    while len(token_ids) < sampling.max_tokens:
        output = model(input_ids=inputs, past_key_values=past, use_cache=True)
        past = output.past_key_values
        logits = output.logits[0, -1].float()
        token = _pick(logits, sampling, generator)
        token_ids.append(token)
        log_probs.append(_log_prob(logits, token, sampling.temperature))
        if token in end_ids or _completes_stop(tokenizer, token_ids, sampling.stop):
            return Generated(token_ids, log_probs, "completed")
        inputs = torch.tensor([[token]])
    return Generated(token_ids, log_probs, "length")


def _completes_stop(tokenizer: Any, token_ids: list[int], stop: tuple[str, ...]) -> bool:
    """Whether the last token completed a stop string (it is in the text, and was not before it)."""
    if not stop:
        return False
    longest = max(len(s) for s in stop)
    tail = tokenizer.decode(token_ids[-(longest + 1) :], skip_special_tokens=False)
    before = tokenizer.decode(token_ids[-(longest + 1) : -1], skip_special_tokens=False)
    return any(s in tail and s not in before for s in stop)


@torch.inference_mode()
def score(model: Any, prompt_ids: list[int], token_ids: list[int], temperature: float) -> list[float]:
    """Log-probs of `token_ids` after `prompt_ids` (one forward pass), as `generate` reports them."""
    if not token_ids:
        return []
    logits = model(input_ids=torch.tensor([prompt_ids + token_ids])).logits[0].float()
    scale = temperature if temperature > 0 else 1.0
    steps = torch.log_softmax(logits[len(prompt_ids) - 1 : -1] / scale, dim=-1)
    return steps.gather(1, torch.tensor(token_ids)[:, None])[:, 0].tolist()
