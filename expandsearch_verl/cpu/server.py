"""The rollout server behind `rollout.name=hf` (and `scripted`): a Ray actor holding a Hugging Face model.

verl's agent loop reaches it through `LLMServerClient.generate` (`server.generate.remote(...)`),
and the trainer's weight sync through `HFServerAdapter.update_weights` (replica.py), which streams
the actor's tensors into `load_weights` after every update. `hf` generates with the project's
batched engine (`retriever_server.generation`: concurrent requests share one `model.generate`,
vLLM's stop/EOS/log-prob semantics); `scripted` writes `ScriptedPolicy`'s turns and scores them
with the same model. The control calls verl makes on a server (`wake_up`, `sleep`, ...) free or
refill GPU memory in vLLM and SGLang; on a CPU there is nothing to free, so they keep the protocol.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import torch
from verl.utils.fs import copy_to_local
from verl.workers.rollout.replica import TokenOutput

from expandsearch_verl.cpu.platform import use_all_cores
from expandsearch_verl.cpu.scripted import ScriptedPolicy, score
from retriever_server.generation import BatchedGenerator, GenerationError, SamplingParams

POLICIES = ("hf", "scripted")


class HFRolloutServer:
    """Generates for verl's agent loop and receives the actor's weights."""

    def __init__(
        self, model_path: str, tokenizer_path: str | None, rollout_config: Any, policy: str, batch_size: int
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if policy not in POLICIES:
            raise ValueError(f"rollout policy {policy!r} is not one of {POLICIES}")
        use_all_cores()
        self.tokenizer = AutoTokenizer.from_pretrained(copy_to_local(tokenizer_path or model_path))
        self.model = AutoModelForCausalLM.from_pretrained(
            copy_to_local(model_path), dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        self.max_model_len = int(
            rollout_config.max_model_len or rollout_config.prompt_length + rollout_config.response_length
        )
        self.engine = BatchedGenerator(self.model, self.tokenizer, batch_size=batch_size, name="rollout")
        self.scripted = ScriptedPolicy(self.tokenizer) if policy == "scripted" else None
        self.busy = threading.Lock()  # scripted turns and their weight loads take the model in turn
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
            raise GenerationError(
                "the HF rollout is text-only: image, video and audio inputs are not supported"
            )
        if float(sampling_params.get("repetition_penalty", 1.0)) != 1.0:
            raise GenerationError("repetition_penalty: the HF rollout supports 1.0 only")
        room = self.max_model_len - len(prompt_ids)
        if room < 1:
            raise GenerationError(
                f"a prompt of {len(prompt_ids)} tokens leaves no room in rollout.max_model_len={self.max_model_len}"
            )
        params = SamplingParams.from_request({"max_tokens": room, **sampling_params})
        if self.scripted is None:
            output = await self.engine.generate(prompt_ids, params)
            token_ids, log_probs = output.token_ids, output.log_probs
        else:
            token_ids, log_probs = await asyncio.to_thread(self._scripted_turn, list(prompt_ids), params)
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason="completed",
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    def _scripted_turn(
        self, prompt_ids: list[int], params: SamplingParams
    ) -> tuple[list[int], list[float] | None]:
        with self.busy:
            token_ids = self.scripted.turn(prompt_ids, params.stop, params.max_tokens)
            log_probs = (
                score(self.model, prompt_ids, token_ids, params.temperature) if params.logprobs else None
            )
        return token_ids, log_probs

    async def load_weights(
        self, named_tensors: list[tuple[str, torch.Tensor]], last: bool, global_steps: int | None
    ) -> int:
        """Copy one bucket of the actor's tensors into the model; returns how many loads completed."""
        if self.scripted is None:
            await self.engine.load_state_dict(named_tensors)  # between two batches
        else:
            await asyncio.to_thread(self._load_locked, named_tensors)
        if last:
            self.weight_loads += 1
            self.global_steps = global_steps
        return self.weight_loads

    def _load_locked(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        with self.busy:
            unexpected = self.model.load_state_dict(dict(named_tensors), strict=False).unexpected_keys
        if unexpected:
            raise GenerationError(f"weights for tensors the model does not have, e.g. {unexpected[:3]}")

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
