"""`hf` backend: a local transformers causal LM, dynamically batched across concurrent requests.

Each request renders its chat prompt (the model's own chat template) into token ids and hands them
to the shared batched generator (`retriever_server.generation`): up to `--squeezer-batch-size`
requests, waiting at most `--squeezer-batch-wait-ms` for company when the model is idle, run as ONE
left-padded greedy `generate` in the model's own thread, `max_new_tokens` = `--squeezer-max-tokens`.
While a batch generates, the next one gathers. A batch whose callers have all given up (timeouts)
stops at the next token instead of running to the end.

GPU when there is one (bfloat16), CPU otherwise (float32); `--squeezer-model` is an HF directory or
name, a `.gguf` file (converted once, see `models.load_causal_lm`) or `smollm2`, the offline demo
model. The tokenizer counts context tokens through a copy of its own: a fast tokenizer must not be
used from two threads at once.
"""

from __future__ import annotations

import asyncio
import copy

from retriever_server.generation import BatchedGenerator, GenerationError, SamplingParams
from retriever_server.squeezer import SqueezeError, SqueezerResources
from retriever_server.squeezer.context import tokenizer_counter
from retriever_server.squeezer.llm import LLMSqueezer
from retriever_server.squeezer.prompt import PromptTemplate

DEMO_MODEL = "smollm2"


class HFChat:
    """Batched greedy chat completions from a local model; `complete` may be called concurrently."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str,
        max_new_tokens: int = 512,
        batch_size: int = 16,
        max_wait_ms: float = 5.0,
        metrics=None,
    ):
        self.tokenizer = tokenizer
        self.model = name
        self.max_new_tokens = max_new_tokens
        self.count_tokens = tokenizer_counter(copy.deepcopy(tokenizer))
        self.generator = BatchedGenerator(
            model,
            tokenizer,
            batch_size=batch_size,
            max_wait_ms=max_wait_ms,
            on_batch=metrics.squeezer_batch.observe if metrics is not None else None,
            name="squeezer-hf",
        )
        self.params = SamplingParams(max_tokens=max_new_tokens)
        self.max_prompt_tokens = self.generator.max_model_len - max_new_tokens

    def prompt_text(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt, add_special_tokens=False)

    async def complete(self, messages: list[dict]) -> str:
        ids = self.prompt_ids(self.prompt_text(messages))
        if len(ids) > self.max_prompt_tokens:
            raise self._too_long(len(ids))
        try:
            generation = await self.generator.generate(ids, self.params)
        except GenerationError as error:
            raise SqueezeError(str(error)) from None
        return self.tokenizer.decode(generation.token_ids, skip_special_tokens=True)

    def generate(
        self, prompts: list[str], futures: list[asyncio.Future] | None = None
    ) -> list[str | Exception]:
        """Greedy completions of `prompts` in one left-padded batch, in the calling thread (benchmarks).

        A prompt too long for the model fails alone; a row whose future is done stops at once.
        """
        ids = [self.prompt_ids(prompt) for prompt in prompts]
        keep = [i for i, row in enumerate(ids) if len(row) <= self.max_prompt_tokens]
        done = (
            self.generator.generate_batch(
                [ids[i] for i in keep],
                [self.params] * len(keep),
                [futures[i].done for i in keep] if futures else None,
            )
            if keep
            else []
        )
        texts = iter(self.tokenizer.decode(g.token_ids, skip_special_tokens=True) for g in done)
        return [next(texts) if i in keep else self._too_long(len(row)) for i, row in enumerate(ids)]

    def _too_long(self, n_tokens: int) -> SqueezeError:
        return SqueezeError(
            f"the prompt has {n_tokens} tokens; the model takes {self.max_prompt_tokens} "
            f"besides the {self.max_new_tokens} it generates: lower --squeezer-context-tokens"
        )

    async def aclose(self) -> None:
        await self.generator.aclose()


def build_hf_squeezer(settings, resources: SqueezerResources) -> LLMSqueezer:
    from retriever_server.models import load_causal_lm

    name = settings.squeezer_model or (DEMO_MODEL if settings.demo else None)
    if not name:
        raise ValueError(
            "squeezer_model: required for squeezer=hf (an HF directory, a .gguf file, or smollm2)"
        )
    model, tokenizer = load_causal_lm(name, device=settings.squeezer_device, cache_dir=settings.cache_dir)
    chat = HFChat(
        model,
        tokenizer,
        name=name,
        max_new_tokens=settings.squeezer_max_tokens,
        batch_size=settings.squeezer_batch_size,
        max_wait_ms=settings.squeezer_batch_wait_ms,
        metrics=resources.metrics,
    )
    chat.generator.generate_batch(
        [chat.prompt_ids("warm up")], [SamplingParams(max_tokens=1)]
    )  # lazy initialisation before "ok"
    return LLMSqueezer(
        "hf", chat, PromptTemplate.load(settings.squeezer_prompt), settings.squeezer_context_tokens
    )
