"""What the evaluation needs from a policy: verl's `LLMServerClient.generate`, and a record of the calls.

A policy is any object with `async generate(request_id, *, prompt_ids, sampling_params, **kw) ->
TokenOutput` (token ids in, token ids out): `OpenAIPolicy` (a vLLM server) or `HFPolicy` (a local
model). The agent loop calls it once per turn. `TrajectoryCalls` wraps it for one trajectory and
keeps each call's tokens and latency, from which the output record takes the model's turns, the
queries it searched and the generation latencies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol


class PolicyError(RuntimeError):
    """The policy cannot generate (a dead server, a refused request): the evaluation stops."""


class Policy(Protocol):
    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> Any: ...


@dataclass(frozen=True)
class GenerateCall:
    """One turn as the engine returned it."""

    prompt_tokens: int
    token_ids: list[int]
    seconds: float


class TrajectoryCalls:
    """`LLMServerClient.generate` for one trajectory: forwards to the policy, records each call.

    A plain class, not a dataclass: hydra's `instantiate` would turn a dataclass argument into a config.
    """

    def __init__(self, policy: Policy):
        self.policy = policy
        self.calls: list[GenerateCall] = []

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> Any:
        started = time.perf_counter()
        output = await self.policy.generate(
            request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs
        )
        self.calls.append(
            GenerateCall(len(prompt_ids), list(output.token_ids), time.perf_counter() - started)
        )
        return output
