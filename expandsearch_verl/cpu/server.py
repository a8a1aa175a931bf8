"""The rollout server behind `rollout.name=hf` (and `scripted`): a Ray actor holding a Hugging Face model.

verl's agent loop reaches it through `LLMServerClient.generate` (`server.generate.remote(...)`),
and the trainer's weight sync through `HFServerAdapter.update_weights` (replica.py), which streams
the actor's tensors into `load_weights` after every update. The control calls verl makes on a
server (`wake_up`, `sleep`, `abort_all_requests`, ...) free or hold GPU memory in vLLM and SGLang;
here there is nothing to free, so they only keep the protocol. One generation runs at a time (the
CPU's cores are all its own); concurrent requests queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import torch
from verl.utils.fs import copy_to_local
from verl.workers.rollout.replica import TokenOutput

from expandsearch_verl.cpu.generation import Generated, Sampling, end_token_ids, generate, score
from expandsearch_verl.cpu.scripted import ScriptedPolicy

logger = logging.getLogger(__name__)
logger.setLevel(os.environ.get("EXPANDSEARCH_LOGGING_LEVEL", "WARNING").upper())

POLICIES = ("hf", "scripted")


class HFRolloutServer:
    """Generates for verl's agent loop and receives the actor's weights; `policy` picks who writes:
    `hf` samples from the model, `scripted` writes `ScriptedPolicy`'s turns scored by the model."""

    def __init__(
        self, model_path: str, tokenizer_path: str | None, rollout_config: Any, policy: str, seed: int
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if policy not in POLICIES:
            raise ValueError(f"rollout policy {policy!r} is not one of {POLICIES}")
        local = copy_to_local(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(copy_to_local(tokenizer_path or model_path))
        self.model = AutoModelForCausalLM.from_pretrained(
            local, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        self.end_ids = end_token_ids(local, self.model, self.tokenizer)
        self.max_model_len = int(
            rollout_config.max_model_len or rollout_config.prompt_length + rollout_config.response_length
        )
        self.scripted = ScriptedPolicy(self.tokenizer) if policy == "scripted" else None
        self.generator = torch.Generator().manual_seed(seed)
        self.busy = threading.Lock()  # the model is used by one request at a time
        self.global_steps: int | None = None
        self.weight_loads = 0

    async def generate(
        self,
        request_id: str,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: Any = None,
        video_data: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data or video_data or kwargs.get("audio_data"):
            raise ValueError("the HF rollout is text-only: image, video and audio inputs are not supported")
        room = self.max_model_len - len(prompt_ids)
        if room < 1:
            raise ValueError(
                f"prompt of {len(prompt_ids)} tokens leaves no room in rollout.max_model_len={self.max_model_len}"
            )
        sampling = Sampling.from_params(sampling_params, room)
        result = await asyncio.to_thread(self._generate, list(prompt_ids), sampling)
        return TokenOutput(
            token_ids=result.token_ids,
            log_probs=result.log_probs if sampling.logprobs else None,
            stop_reason="completed",
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    def _generate(self, prompt_ids: list[int], sampling: Sampling) -> Generated:
        with self.busy:
            if self.scripted is None:
                return generate(
                    self.model, self.tokenizer, prompt_ids, sampling, self.end_ids, self.generator
                )
            token_ids = self.scripted.turn(prompt_ids, sampling.stop, sampling.max_tokens)
            log_probs = (
                score(self.model, prompt_ids, token_ids, sampling.temperature) if sampling.logprobs else []
            )
            return Generated(token_ids, log_probs, "completed")

    def load_weights(
        self, named_tensors: list[tuple[str, torch.Tensor]], last: bool, global_steps: int | None
    ) -> int:
        """Copy one bucket of the actor's tensors into the model; returns how many loads completed."""
        own = self.model.state_dict()
        unknown = [name for name, _ in named_tensors if name not in own]
        if unknown:
            raise KeyError(f"the actor sent weights this model does not have: {unknown[:5]}")
        with self.busy, torch.no_grad():
            for name, tensor in named_tensors:
                own[name].copy_(tensor.to(own[name].dtype))
        if last:
            self.weight_loads += 1
            self.global_steps = global_steps
        return self.weight_loads

    def stats(self) -> dict[str, Any]:
        """What a test or a benchmark reads: completed weight loads and the step they came from."""
        return {"weight_loads": self.weight_loads, "global_steps": self.global_steps}

    # The server protocol verl drives (vLLM and SGLang free and refill GPU memory here).
    async def wake_up(self) -> None: ...
    async def sleep(self) -> None: ...
    async def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        return {}

    async def resume_generation(self) -> None: ...
    async def clear_kv_cache(self) -> None: ...
    async def release_kv_cache(self) -> None: ...
    async def resume_kv_cache(self) -> None: ...
    async def start_profile(self, **kwargs: Any) -> None: ...
    async def stop_profile(self) -> None: ...
