"""Squeezers: distil the fused passages of one search turn into what matters for its queries.

The seam the engine calls after fusion (see `service.SearchService.search`). A backend implements
`Squeezer` and registers a factory in `SQUEEZERS`; `build_squeezer(name, settings)` picks it by the
`squeezer` setting. Only `none` exists here; the backends (OpenAI-compatible server, local HF
model, extractive) are the squeezer issue's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from retriever_server.corpus import Passage


class SqueezerUnavailable(RuntimeError):
    """No squeezer backend is configured; the message says how to start one."""


class Squeezer(Protocol):
    name: str

    async def squeeze(self, queries: list[str], documents: list[Passage], question: str | None) -> str:
        """The summary of `documents` for `queries` (and the original `question`, when given)."""
        ...

    async def aclose(self) -> None: ...


class NoneSqueezer:
    """No squeezer: /search returns the fused passages; asking for a summary says how to get one."""

    name = "none"

    async def squeeze(self, queries: list[str], documents: list[Passage], question: str | None) -> str:
        raise SqueezerUnavailable("no squeezer is configured (squeezer=none); start the server with --squeezer BACKEND")

    async def aclose(self) -> None:
        return None


SQUEEZERS: dict[str, Callable[[object], Squeezer]] = {"none": lambda settings: NoneSqueezer()}


def build_squeezer(name: str, settings: object) -> Squeezer:
    if name not in SQUEEZERS:
        raise ValueError(f"squeezer={name!r}: choose one of {sorted(SQUEEZERS)}")
    return SQUEEZERS[name](settings)
