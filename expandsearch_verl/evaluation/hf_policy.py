"""`LLMServerClient.generate` over a local causal LM, batched across concurrent trajectories.

The batching is the hf squeezer's (`retriever_server.squeezer.hf.HFChat`): requests queue, one
worker takes what is waiting (up to `batch_size`, waiting at most `max_wait_ms` for company when the
model is idle) and runs ONE `generate` in the model's own thread, while the next batch gathers; a
batch whose callers have all gone (a cancelled run) stops at the next token. What differs here is
the request: token ids (the trajectory so far, never re-encoded) with their own budget
(`max_tokens`) and stop strings, instead of chat messages. Rows are left-padded into one batch and
each stops as an engine stops it: after the token that completes one of its stop strings, at EOS
(included, as vLLM returns it) or at its budget. Requests with other sampling params (temperature,
top-p, top-k, log-probs) go in separate `generate` calls of the same batch.

`HFPolicy.load` takes an HF directory or hub name, a `.gguf` file (converted once and cached, see
`retriever_server.models.load_causal_lm`) or `smollm2`, the offline demo model.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from expandsearch_verl.evaluation.policy import PolicyError
from retriever_server.squeezer import SqueezeError
from retriever_server.squeezer.hf import HFChat


@dataclass(frozen=True)
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    stops: tuple[str, ...]
    sampling: tuple[float, float, int, bool]  # temperature, top_p, top_k, log-probs


class _RowStops:
    """A stopping criterion with a verdict per row: its stop string, EOS or budget; `ends[row]` says where."""

    def __init__(
        self, requests: list[_Request], tokenizer: Any, start: int, eos_ids: set[int], futures: list | None
    ):
        self.requests, self.tokenizer, self.start, self.eos_ids, self.futures = (
            requests,
            tokenizer,
            start,
            eos_ids,
            futures,
        )
        self.ends: list[int | None] = [None] * len(requests)
        # a stop string spans at most len(stop) tokens (+1 for a token that begins before it)
        self.lookback = max((len(stop) + 1 for request in requests for stop in request.stops), default=1)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids.shape[1] - self.start
        for row, request in enumerate(self.requests):
            if self.ends[row] is not None:
                continue
            if int(input_ids[row, -1]) in self.eos_ids or generated >= request.max_tokens:
                self.ends[row] = generated
            elif request.stops:
                tail = input_ids[row, max(self.start, input_ids.shape[1] - self.lookback) :].tolist()
                text = self.tokenizer.decode(tail, skip_special_tokens=False)
                if any(stop in text for stop in request.stops):
                    self.ends[row] = generated
        abandoned = self.futures is not None and all(future.done() for future in self.futures)
        done = [abandoned or end is not None for end in self.ends]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _TokenBatches(HFChat):
    """HFChat's queue, batch gathering and model thread, for token-id requests."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any):
        super().__init__(model, tokenizer, **kwargs)
        eos = self.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.stop_tokenizer = copy.deepcopy(tokenizer)  # used in the model's thread only

    def prompt_text(self, request: _Request) -> _Request:  # type: ignore[override]
        return request  # token ids already: nothing to render

    def generate(self, requests: list[_Request], futures: list | None = None) -> list[Any]:  # type: ignore[override]
        """One batch (in the model's thread): a `TokenOutput` per request, in order."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[request.sampling].append(index)
        outputs: list[Any] = [None] * len(requests)
        for sampling, indices in groups.items():
            group = [requests[i] for i in indices]
            waiting = [futures[i] for i in indices] if futures else None
            for index, output in zip(indices, self._generate_group(group, sampling, waiting), strict=True):
                outputs[index] = output
        return outputs

    def _generate_group(self, requests: list[_Request], sampling: tuple, futures: list | None) -> list[Any]:
        import torch
        from transformers import StoppingCriteriaList
        from verl.workers.rollout.replica import TokenOutput

        temperature, top_p, top_k, logprobs = sampling
        width = max(len(request.prompt_ids) for request in requests)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests])
        attention = torch.tensor(
            [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in requests]
        )
        stops = _RowStops(requests, self.stop_tokenizer, width, self.eos_ids, futures)
        sample = temperature > 0
        with torch.inference_mode():
            out = self.lm.generate(
                input_ids=input_ids.to(self.lm.device),
                attention_mask=attention.to(self.lm.device),
                max_new_tokens=max(request.max_tokens for request in requests),
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=top_p if sample else None,
                top_k=top_k if sample and top_k > 0 else None,
                eos_token_id=self.eos_token_id,
                pad_token_id=pad,
                stopping_criteria=StoppingCriteriaList([stops]),
                return_dict_in_generate=True,
                output_scores=logprobs,
            )
            scores = (
                self.lm.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
                if logprobs
                else None
            )
        outputs = []
        for row, request in enumerate(requests):
            new = out.sequences[row, width:].tolist()
            length = min(stops.ends[row] or len(new), request.max_tokens)
            log_probs = [float(x) for x in scores[row, :length]] if scores is not None else None
            outputs.append(TokenOutput(token_ids=new[:length], log_probs=log_probs, stop_reason="completed"))
        return outputs


class HFPolicy:
    """A local model behind `LLMServerClient.generate`; call `generate` concurrently to batch."""

    def __init__(
        self, model: Any, tokenizer: Any, *, model_path: str, batch_size: int = 16, max_wait_ms: float = 10
    ):
        self.model_path, self.tokenizer = model_path, tokenizer
        self.max_model_len = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self._batches = _TokenBatches(
            model,
            tokenizer,
            name=model_path,
            max_new_tokens=1,
            batch_size=batch_size,
            max_wait_ms=max_wait_ms,
        )

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
        request = _Request(
            prompt_ids=list(prompt_ids),
            max_tokens=int(sampling_params["max_tokens"]),
            stops=tuple(sampling_params.get("stop") or ()),
            sampling=(
                float(sampling_params.get("temperature", 0.0)),
                float(sampling_params.get("top_p", 1.0)),
                int(sampling_params.get("top_k", -1)),
                bool(sampling_params.get("logprobs")),
            ),
        )
        if len(request.prompt_ids) + request.max_tokens > self.max_model_len:
            raise PolicyError(
                f"{len(request.prompt_ids)} prompt tokens + max_tokens {request.max_tokens} exceed the model's "
                f"{self.max_model_len} positions: lower --prompt-length / --response-length"
            )
        try:
            return await self._batches.complete(request)
        except SqueezeError as error:  # HFChat's wrapper of a failed batch
            raise PolicyError(f"the local policy {self.model_path} failed: {error}") from None

    async def aclose(self) -> None:
        await self._batches.aclose()
