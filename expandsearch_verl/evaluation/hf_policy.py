"""`LLMServerClient.generate` over a local causal LM, batched across concurrent trajectories.

The engine is the project's batched generator (`retriever_server.generation.BatchedGenerator`, the
hf squeezer's too): requests queue, one worker takes what is waiting (up to `batch_size`, waiting
at most `max_wait_ms` for company when the model is idle) and runs ONE left-padded `generate` in the
model's own thread while the next batch gathers. Each request is the trajectory so far as token ids
(never re-encoded) with its own budget (`max_tokens`), stop strings and sampling params; each row
stops as an engine stops it: after the token that completes one of its stop strings, at EOS
(included, as vLLM returns it) or at its budget. This module only maps verl's request and
`TokenOutput` onto it.

`HFPolicy.load` takes an HF directory or hub name, a `.gguf` file (converted once and cached, see
`retriever_server.models.load_causal_lm`) or `smollm2`, the offline demo model.
"""

from __future__ import annotations

from typing import Any

from expandsearch_verl.evaluation.policy import PolicyError
from retriever_server.generation import (
    BatchedGenerator,
    ContextTooLong,
    GenerationError,
    SamplingParams,
)


class HFPolicy:
    """A local model behind `LLMServerClient.generate`; call `generate` concurrently to batch."""

    def __init__(
        self, model: Any, tokenizer: Any, *, model_path: str, batch_size: int = 16, max_wait_ms: float = 10
    ):
        self.model_path, self.tokenizer = model_path, tokenizer
        self.generator = BatchedGenerator(
            model, tokenizer, batch_size=batch_size, max_wait_ms=max_wait_ms, name="policy"
        )
        self.max_model_len = self.generator.max_model_len

    @classmethod
    def load(
        cls, name_or_path: str, *, device: str = "auto", batch_size: int = 16, tokenizer: str | None = None
    ) -> HFPolicy:
        """The model from a directory, a hub name, a `.gguf` file or `smollm2` (GGUF: converted once, cached)."""
        from transformers import AutoTokenizer

        from retriever_server.models import hf_source, load_causal_lm

        source = hf_source(name_or_path)
        model, own_tokenizer = load_causal_lm(source, device=device)
        chosen = AutoTokenizer.from_pretrained(tokenizer) if tokenizer else own_tokenizer
        return cls(model, chosen, model_path=source, batch_size=batch_size)

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> Any:
        from verl.workers.rollout.replica import TokenOutput

        try:
            params = SamplingParams.from_request(sampling_params)
            generation = await self.generator.generate(prompt_ids, params)
        except ContextTooLong as error:
            raise PolicyError(f"{error}: lower --prompt-length / --response-length") from None
        except GenerationError as error:
            raise PolicyError(f"the local policy {self.model_path} failed: {error}") from None
        return TokenOutput(
            token_ids=generation.token_ids, log_probs=generation.log_probs, stop_reason="completed"
        )

    async def aclose(self) -> None:
        await self.generator.aclose()
