"""Batched generation from a local transformers causal LM: token ids in, token ids out.

One engine for every local model of the project: the `hf` squeezer (chat prompts rendered to ids),
the evaluation's local policy and verl's CPU rollout replica (token ids from the agent loop). It
lives next to `models.py`, which loads the model, because `retriever_server` imports nothing from
`expandsearch_verl` while `expandsearch_verl` may import from here.

1. A caller awaits `generate(prompt_ids, params)`; its request joins a queue.
2. One worker coroutine takes what is waiting (up to `batch_size`, waiting at most `max_wait_ms`
   for company when the model is idle) and runs ONE `model.generate` over the batch in the model's
   own thread, rows left-padded; the next batch gathers meanwhile.
3. Each row follows its own `SamplingParams`: greedy or sampled (temperature, top-p, top-k through
   transformers' own warpers, from a per-row `torch.Generator` when it has a seed, so a seeded row
   gives the same tokens alone or in any batch), its own budget and stop strings.
4. A row ends as an engine ends it: after the token that completes one of its stop strings, at an
   EOS id of the model's `generation_config` (included, as vLLM returns it), at `max_tokens`, or
   when its caller has gone (a batch whose callers have all gone stops at the next token).
5. `load_state_dict` runs in the model's thread too, so new weights land between two batches;
   so does `score` (the log-probs of tokens written elsewhere, e.g. by a scripted rollout).

Log-probs are those of the chosen token under the distribution the row samples from before
truncation: log-softmax(logits / temperature), the raw logits when greedy (what verl's actor
computes for the same tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "abort"]


class GenerationError(RuntimeError):
    """A request the model cannot serve (bad parameters, too long) or a batch that failed."""


class ContextTooLong(GenerationError):
    """The prompt plus its budget exceed the model's positions (the caller's lengths are the fix)."""


@dataclass(frozen=True)
class SamplingParams:
    """One request's decoding: vLLM's names and meanings. temperature 0 is greedy."""

    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1  # -1 or 0: no top-k
    seed: int | None = None  # sampled rows: the same seed gives the same tokens, alone or batched
    logprobs: bool = False

    def __post_init__(self) -> None:
        problems = [
            f"max_tokens must be an integer >= 1, got {self.max_tokens!r}"
            if not _is_int(self.max_tokens) or self.max_tokens < 1
            else "",
            f"temperature must be a number in [0, 100], got {self.temperature!r}"
            if not _is_number(self.temperature) or not 0 <= self.temperature <= 100
            else "",
            f"top_p must be a number in (0, 1], got {self.top_p!r}"
            if not _is_number(self.top_p) or not 0 < self.top_p <= 1
            else "",
            f"top_k must be -1, 0 or a positive integer, got {self.top_k!r}"
            if not _is_int(self.top_k) or self.top_k < -1
            else "",
            f"seed must be an integer or None, got {self.seed!r}"
            if self.seed is not None and not _is_int(self.seed)
            else "",
            f"stop must be a list of non-empty strings, got {self.stop!r}"
            if not all(isinstance(s, str) and s for s in self.stop)
            else "",
        ]
        if any(problems):
            raise GenerationError("; ".join(p for p in problems if p))

    @classmethod
    def from_request(cls, sampling_params: Mapping[str, Any]) -> SamplingParams:
        """From the dict verl's agent loop (and vLLM) pass: max_tokens, stop, temperature, ..."""
        if "max_tokens" not in sampling_params:
            raise GenerationError("max_tokens is required")
        stop = sampling_params.get("stop") or ()
        return cls(
            max_tokens=sampling_params["max_tokens"],
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            temperature=sampling_params.get("temperature", 0.0),
            top_p=sampling_params.get("top_p", 1.0),
            top_k=sampling_params.get("top_k", -1),
            seed=sampling_params.get("seed"),
            logprobs=bool(sampling_params.get("logprobs")),
        )


@dataclass(frozen=True)
class Generation:
    """One row's output: the new tokens (stop string and EOS included), why it ended, and log-probs."""

    token_ids: list[int]
    finish_reason: FinishReason  # stop: a stop string or EOS; length: max_tokens; abort: its caller left
    stop_reason: str | int | None = None  # the stop string matched, or the EOS id
    log_probs: list[float] | None = None  # one per token when asked


@dataclass
class _Pending:
    prompt_ids: list[int]
    params: SamplingParams
    future: asyncio.Future


@dataclass
class _Batch:
    """What the row sampler and the row stopper share while one batch generates."""

    params: list[SamplingParams]
    start: int  # the padded prompt width: generated tokens begin here
    gone: list[Callable[[], bool]] | None
    generators: list[Any] = field(default_factory=list)
    ends: list[tuple[int, FinishReason, str | int | None] | None] = field(default_factory=list)
    log_probs: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ends = [None] * len(self.params)
        self.log_probs = [[] for _ in self.params]


class _RowSampler:
    """A logits processor that picks each row's token by its own params; greedy `generate` keeps it."""

    def __init__(self, batch: _Batch):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.batch = batch
        self.warpers = [
            [TemperatureLogitsWarper(p.temperature)]
            + ([TopKLogitsWarper(p.top_k)] if p.top_k > 0 else [])
            + ([TopPLogitsWarper(p.top_p)] if p.top_p < 1 else [])
            if p.temperature > 0
            else []
            for p in batch.params
        ]

    def __call__(self, input_ids, scores):
        import torch

        chosen = scores.argmax(dim=-1)
        for row, params in enumerate(self.batch.params):
            if self.batch.ends[row] is not None:
                continue  # finished: generate pads it
            if params.temperature > 0:
                logits = scores[row : row + 1] / params.temperature
                warped = scores[row : row + 1]
                for warper in self.warpers[row]:
                    warped = warper(input_ids[row : row + 1], warped)
                probs = torch.softmax(warped, dim=-1)
                chosen[row] = torch.multinomial(probs, 1, generator=self.batch.generators[row])[0, 0]
            else:
                logits = scores[row : row + 1]
            if params.logprobs:
                log_probs = torch.log_softmax(logits[0], dim=-1)
                self.batch.log_probs[row].append(float(log_probs[chosen[row]]))
        picked = torch.full_like(scores, float("-inf"))
        picked.scatter_(1, chosen[:, None], 0.0)
        return picked


class _RowStopper:
    """A stopping criterion with a verdict per row: EOS, a stop string, its budget or its caller gone."""

    def __init__(self, batch: _Batch, tokenizer: Any, eos_ids: frozenset[int]):
        self.batch, self.tokenizer, self.eos_ids = batch, tokenizer, eos_ids
        # a stop string spans at most len(stop) tokens (+1 for a token that begins before it)
        self.lookback = max((len(s) + 1 for p in batch.params for s in p.stop), default=1)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        batch = self.batch
        generated = input_ids.shape[1] - batch.start
        for row, params in enumerate(batch.params):
            if batch.ends[row] is not None:
                continue
            last = int(input_ids[row, -1])
            if last in self.eos_ids:
                batch.ends[row] = (generated, "stop", last)
            elif stop := self._stop_string(input_ids[row], params.stop):
                batch.ends[row] = (generated, "stop", stop)
            elif generated >= params.max_tokens:
                batch.ends[row] = (generated, "length", None)
            elif batch.gone is not None and batch.gone[row]():
                batch.ends[row] = (generated, "abort", None)
        done = [end is not None for end in batch.ends]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _stop_string(self, row_ids, stops: tuple[str, ...]) -> str | None:
        if not stops:
            return None
        tail = row_ids[max(self.batch.start, row_ids.shape[0] - self.lookback) :].tolist()
        text = self.tokenizer.decode(tail, skip_special_tokens=False)
        found = [stop for stop in stops if stop in text]
        return min(found, key=text.find) if found else None


class BatchedGenerator:
    """A local causal LM behind an async, dynamically batched `generate`; call it concurrently."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "local",
    ):
        self.model, self.name = model, name
        self.batch_size, self.max_wait_s, self.on_batch = batch_size, max_wait_ms / 1e3, on_batch
        self.tokenizer = copy.deepcopy(
            tokenizer
        )  # used in the model's thread only (fast tokenizers are not thread-safe)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_token_ids: tuple[int, ...] = tuple(eos) if isinstance(eos, list | tuple) else (eos,)
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else self.eos_token_ids[0]  # masked anyway
        self.max_model_len = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"generate-{name}")
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    def check(self, prompt_ids: Sequence[int], params: SamplingParams) -> None:
        """Refuse a request the model cannot take, naming the numbers."""
        if not prompt_ids:
            raise GenerationError("prompt_ids must not be empty")
        if len(prompt_ids) + params.max_tokens > self.max_model_len:
            raise ContextTooLong(
                f"{len(prompt_ids)} prompt tokens + max_tokens {params.max_tokens} exceed the model's "
                f"{self.max_model_len} positions"
            )

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> Generation:
        """This request's generation, from a batch shared with whoever asks at the same time."""
        self.check(prompt_ids, params)
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._worker = loop.create_task(self._run(), name=f"generate-{self.name}-batcher")
        future = loop.create_future()
        self._queue.put_nowait(_Pending(list(prompt_ids), params, future))
        return await future

    async def score(
        self, prompt_ids: Sequence[int], token_ids: Sequence[int], temperature: float = 0.0
    ) -> list[float]:
        """Log-probs of given `token_ids` after `prompt_ids` (one teacher-forced forward, in the model's
        thread), as `generate` reports them for the same tokens: for a policy whose turns are written
        elsewhere (a scripted rollout) but scored by this model."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self.score_tokens, prompt_ids, token_ids, temperature
        )

    def score_tokens(
        self, prompt_ids: Sequence[int], token_ids: Sequence[int], temperature: float = 0.0
    ) -> list[float]:
        """`score`, blocking (call it from the model's thread)."""
        import torch

        if not token_ids:
            return []
        self.check(prompt_ids, SamplingParams(max_tokens=len(token_ids), temperature=temperature))
        with torch.inference_mode():
            ids = torch.tensor([[*prompt_ids, *token_ids]], device=self.model.device)
            logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
        log_probs = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
        return log_probs.gather(1, torch.tensor(list(token_ids), device=logits.device)[:, None])[
            :, 0
        ].tolist()

    async def load_state_dict(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """New weights (all or some of the model's tensors), loaded between two batches."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._load, weights)

    def _load(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        state = dict(weights.items() if isinstance(weights, Mapping) else weights)
        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise GenerationError(
                f"weights for {len(result.unexpected_keys)} tensors the model does not have, "
                f"e.g. {result.unexpected_keys[:3]}"
            )

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
                outputs: list[Any] = await loop.run_in_executor(
                    self._thread,
                    self.generate_batch,
                    [p.prompt_ids for p in batch],
                    [p.params for p in batch],
                    [f.done for f in futures],
                )
            except Exception as exc:  # the batch failed: its callers get the error, the worker lives on
                logger.exception("%s: a batch of %d failed", self.name, len(batch))
                outputs = [GenerationError(f"generation failed: {type(exc).__name__}: {exc}")] * len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for future, output in zip(futures, outputs, strict=True):
                if future.done():
                    continue
                if isinstance(output, Exception):
                    future.set_exception(output)
                else:
                    future.set_result(output)

    def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        params: Sequence[SamplingParams],
        gone: Sequence[Callable[[], bool]] | None = None,
    ) -> list[Generation]:
        """One left-padded `model.generate` over these rows (blocking: call it from the model's thread)."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        for prompt_ids, row_params in zip(prompts, params, strict=True):
            self.check(prompt_ids, row_params)
        width = max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[self.pad_token_id] * (width - len(ids)) + list(ids) for ids in prompts])
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
        batch = _Batch(list(params), width, list(gone) if gone is not None else None)
        device = self.model.device
        for row_params in params:
            generator = None
            if row_params.temperature > 0 and row_params.seed is not None:
                generator = torch.Generator(device=device).manual_seed(row_params.seed)
            batch.generators.append(generator)
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=max(p.max_tokens for p in params),
                do_sample=False,  # _RowSampler has already chosen each row's token
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=list(self.eos_token_ids),
                pad_token_id=self.pad_token_id,
                logits_processor=LogitsProcessorList([_RowSampler(batch)]),
                stopping_criteria=StoppingCriteriaList(
                    [_RowStopper(batch, self.tokenizer, frozenset(self.eos_token_ids))]
                ),
            )
        outputs = []
        for row, row_params in enumerate(params):
            new = sequences[row, width:].tolist()
            length, finish, stop = batch.ends[row] or (len(new), "length", None)
            outputs.append(
                Generation(
                    token_ids=new[:length],
                    finish_reason=finish,
                    stop_reason=stop,
                    log_probs=batch.log_probs[row][:length] if row_params.logprobs else None,
                )
            )
        return outputs

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._thread.shutdown(
            wait=False, cancel_futures=True
        )  # never block the event loop on a running batch


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
