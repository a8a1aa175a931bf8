"""`hf` backend: a local transformers causal LM, dynamically batched across concurrent requests.

Each request renders its chat prompt (the model's own chat template) and queues it. One worker
coroutine takes what is waiting (up to `--squeezer-batch-size`, waiting at most
`--squeezer-batch-wait-ms` for company when the model is idle), and runs ONE `generate` over the
batch in the model's own thread: left padding, greedy, `max_new_tokens` = `--squeezer-max-tokens`.
While a batch generates, the next one gathers in the queue. A batch whose callers have all given up
(timeouts) stops at the next token instead of running to the end.

GPU when there is one (bfloat16), CPU otherwise (float32); `--squeezer-model` is an HF directory or
name, a `.gguf` file (converted once, see `models.load_causal_lm`) or `smollm2`, the offline demo
model. The tokenizer counts context tokens through a copy of its own: a fast tokenizer must not be
used from two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from retriever_server.squeezer import SqueezeError, SqueezerResources
from retriever_server.squeezer.context import tokenizer_counter
from retriever_server.squeezer.llm import LLMSqueezer
from retriever_server.squeezer.prompt import PromptTemplate

logger = logging.getLogger(__name__)

DEMO_MODEL = "smollm2"


@dataclass
class _Pending:
    prompt: str
    future: asyncio.Future


class _AllAbandoned:
    """A stopping criterion: every sequence is done once every caller of the batch has gone."""

    def __init__(self, futures: list[asyncio.Future]):
        self.futures = futures

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full(
            (input_ids.shape[0],),
            all(f.done() for f in self.futures),
            dtype=torch.bool,
            device=input_ids.device,
        )


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
        self.lm = model
        self.tokenizer = tokenizer
        self.model = name
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_wait_s = max_wait_ms / 1e3
        self.metrics = metrics
        self.count_tokens = tokenizer_counter(copy.deepcopy(tokenizer))
        tokenizer.padding_side = "left"
        config = model.generation_config
        self.eos_token_id = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
        if tokenizer.pad_token_id is None:  # SmolLM2's GGUF tokenizer has none: pad with EOS (masked anyway)
            eos = self.eos_token_id
            tokenizer.pad_token_id = eos[0] if isinstance(eos, list) else eos
        self.max_prompt_tokens = (
            int(getattr(model.config, "max_position_embeddings", 1 << 30)) - max_new_tokens
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeezer-hf")
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    def prompt_text(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    async def complete(self, messages: list[dict]) -> str:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="squeezer-hf-batcher")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(self.prompt_text(messages), future))
        return await future

    async def _next_batch(self) -> list[_Pending]:
        """The first waiting request plus whatever joins it before the batch is full or the wait is over."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
            except TimeoutError:
                break
        return [pending for pending in batch if not pending.future.done()]  # drop callers that have gone

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            futures = [pending.future for pending in batch]
            try:
                summaries = await loop.run_in_executor(
                    self._thread, self.generate, [p.prompt for p in batch], futures
                )
            except Exception as exc:  # the batch failed: its callers get the error, the worker lives on
                logger.exception("squeezer batch of %d failed", len(batch))
                summaries = [exc] * len(batch)
            if self.metrics is not None:
                self.metrics.squeezer_batch.observe(len(batch))
            for future, summary in zip(futures, summaries, strict=True):
                if future.done():
                    continue
                if isinstance(summary, Exception):
                    future.set_exception(
                        SqueezeError(f"generation failed: {type(summary).__name__}: {summary}")
                    )
                else:
                    future.set_result(summary)

    def generate(
        self, prompts: list[str], futures: list[asyncio.Future] | None = None
    ) -> list[str | Exception]:
        """Greedy completions of `prompts` in one left-padded batch (in the model's thread)."""
        import torch
        from transformers import StoppingCriteriaList

        encoded = self.tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
        lengths = encoded["attention_mask"].sum(dim=1).tolist()
        too_long = [n > self.max_prompt_tokens for n in lengths]
        if all(too_long):
            return [self._too_long(n) for n in lengths]
        if any(too_long):  # run the others; the long ones fail alone
            keep = [i for i, bad in enumerate(too_long) if not bad]
            done = iter(
                self.generate([prompts[i] for i in keep], [futures[i] for i in keep] if futures else None)
            )
            return [
                self._too_long(n) if bad else next(done) for n, bad in zip(lengths, too_long, strict=True)
            ]
        encoded = encoded.to(self.lm.device)
        stopping = StoppingCriteriaList([_AllAbandoned(futures)]) if futures else None
        with torch.inference_mode():
            output = self.lm.generate(
                **encoded,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=stopping,
            )
        return self.tokenizer.batch_decode(
            output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
        )

    def _too_long(self, n_tokens: int) -> SqueezeError:
        return SqueezeError(
            f"the prompt has {n_tokens} tokens; the model takes {self.max_prompt_tokens} "
            f"besides the {self.max_new_tokens} it generates: lower --squeezer-context-tokens"
        )

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._thread.shutdown(
            wait=False, cancel_futures=True
        )  # never block the event loop on a running batch


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
    chat.lm.generate(
        **tokenizer(["warm up"], return_tensors="pt").to(chat.lm.device),
        max_new_tokens=1,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )  # lazy initialisation before "ok"
    return LLMSqueezer(
        "hf", chat, PromptTemplate.load(settings.squeezer_prompt), settings.squeezer_context_tokens
    )
