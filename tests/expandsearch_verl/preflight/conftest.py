"""`preflight`: run chosen doctor checks in-process on overrides (`small_run`, tests/expandsearch_verl/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from expandsearch_verl.preflight import CHECKS, CheckResult, Preflight
from expandsearch_verl.preflight.verl_config import check_config

# What a check reads from the checks before it (besides the composed config).
NEEDS = {"train-data": ("agent-loop", "model"), "val-data": ("agent-loop", "model"), "retriever": ("agent-loop",),
         "squeezer": ("agent-loop",), "ray-nodes": ("agent-loop",)}


@pytest.fixture
def preflight() -> Callable[..., tuple[Preflight, list[CheckResult]]]:
    """`preflight(overrides, *names, **options)`: compose, run what the named checks need, then the named
    checks, in the doctor's order; returns the context and the named checks' results."""

    def run(overrides: list[str], *names: str, **options) -> tuple[Preflight, list[CheckResult]]:
        ctx = Preflight(list(overrides), **options)
        composed = check_config(ctx)
        results = composed if "config" in names else []
        wanted = {need for name in names for need in NEEDS.get(name, ())} | set(names)
        for name, check in CHECKS[1:]:
            if name in wanted:
                found = check(ctx)
                results += found if name in names else []
        return ctx, results

    return run
