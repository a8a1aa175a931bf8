"""Squeezers: distil the fused passages of one search turn into what matters for its queries.

The engine calls the squeezer after fusion (`search.service.SearchService.search`, step 4); `/squeeze`
calls it on passages a client sends. One interface (`Squeezer`), one module per backend, chosen by
`--squeezer` (`build_squeezer`):

    none        no squeezing. /search returns the fused passages (`squeezed: false`, no error: it is
                the "w/o squeezer" setting, not a failure); /squeeze returns the passages themselves,
                de-duplicated, numbered and cut to the context budget, as its `summary`.
    openai      any OpenAI-compatible chat-completions server: vLLM, SGLang, NVIDIA NIM (openai.py)
    hf          a local transformers causal LM, dynamically batched across requests (hf.py)
    extractive  no LLM: the sentences nearest to the queries under the server's own encoder
                (extractive.py), a cheap baseline

`openai` and `hf` share the prompt (prompt.py, a replaceable YAML file) and the context builder
(context.py); every backend but `none` sits behind the squeeze cache (cache.py). A backend raises
on failure; the service turns that into `squeezed: false` plus `squeeze_error` on /search.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from retriever_server.index.corpus import Passage
from retriever_server.squeezer.context import estimate_tokens, format_passages, select_passages

NONE = "none"


class SqueezeError(RuntimeError):
    """The backend could not produce a summary; the message says why (it becomes `squeeze_error`)."""


class Squeezer(Protocol):
    name: str  # the backend: none | openai | hf | extractive
    model: str  # what squeezes (a served model name, a checkpoint, an encoder); "" for none

    async def squeeze(self, queries: list[str], documents: list[Passage], question: str | None) -> str:
        """The summary of `documents` (best first) for `queries` and the original `question`, if given."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class SqueezerResources:
    """What a backend may borrow from the server: the dense encoder and the one thread that owns it."""

    encoder: object | None = None  # retriever_server.index.encoder.Encoder
    engine: Executor | None = None  # the engine thread; the encoder is only ever used there
    metrics: object | None = None  # retriever_server.metrics.ServerMetrics


class NoneSqueezer:
    """The identity squeezer: the passages are the result (de-duplicated, numbered, budget-cut)."""

    name = NONE
    model = ""

    def __init__(self, context_tokens: int):
        self.context_tokens = context_tokens

    async def squeeze(self, queries: list[str], documents: list[Passage], question: str | None) -> str:
        return format_passages(select_passages(documents, self.context_tokens, estimate_tokens))

    async def aclose(self) -> None:
        return None


def _none(settings, resources: SqueezerResources) -> Squeezer:
    return NoneSqueezer(settings.squeezer_context_tokens)


def _openai(settings, resources: SqueezerResources) -> Squeezer:
    from retriever_server.squeezer.openai import build_openai_squeezer

    return build_openai_squeezer(settings, resources)


def _hf(settings, resources: SqueezerResources) -> Squeezer:
    from retriever_server.squeezer.hf import build_hf_squeezer

    return build_hf_squeezer(settings, resources)


def _extractive(settings, resources: SqueezerResources) -> Squeezer:
    from retriever_server.squeezer.extractive import build_extractive_squeezer

    return build_extractive_squeezer(settings, resources)


SQUEEZERS: dict[str, Callable[[object, SqueezerResources], Squeezer]] = {
    NONE: _none,
    "openai": _openai,
    "hf": _hf,
    "extractive": _extractive,
}


def build_squeezer(settings, resources: SqueezerResources | None = None) -> Squeezer:
    """The backend named by `settings.squeezer`, behind the squeeze cache (except `none`)."""
    if settings.squeezer not in SQUEEZERS:
        raise ValueError(f"squeezer={settings.squeezer!r}: choose one of {sorted(SQUEEZERS)}")
    resources = resources or SqueezerResources()
    squeezer = SQUEEZERS[settings.squeezer](settings, resources)
    if settings.squeezer == NONE:
        return squeezer
    from retriever_server.squeezer.cache import CachedSqueezer, SqueezeCache

    cache = SqueezeCache(settings.squeezer_cache_size, settings.squeezer_cache_db)
    identity = {
        "backend": squeezer.name,
        "model": squeezer.model,
        "prompt": getattr(squeezer, "prompt_id", ""),
        "max_tokens": settings.squeezer_max_tokens,
        "context_tokens": settings.squeezer_context_tokens,
    }
    return CachedSqueezer(squeezer, cache, identity, resources.metrics)
