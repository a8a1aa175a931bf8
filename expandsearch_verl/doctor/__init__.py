"""Preflight checks behind `expandsearch doctor`: everything a GPU job would otherwise discover late.

Each check is a function `(Preflight) -> list[CheckResult]` (pass / warn / fail / skip, with a
one-line fix); they run in `CHECKS` order because later ones use what earlier ones loaded (the
composed config, the agent-loop entries, the actor's tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable

from expandsearch_verl.doctor.context import Preflight
from expandsearch_verl.doctor.data import check_train_data, check_val_data
from expandsearch_verl.doctor.memory import check_gpu_memory, check_logits
from expandsearch_verl.doctor.model import check_models
from expandsearch_verl.doctor.plugin import check_agent_loop, check_reward
from expandsearch_verl.doctor.ray_nodes import check_ray_nodes
from expandsearch_verl.doctor.report import CheckResult, Status, skipped
from expandsearch_verl.doctor.runtime import (
    check_gpus,
    check_plugin_install,
    check_rollout_engine,
    check_trainer,
    check_verl_internals,
)
from expandsearch_verl.doctor.services import check_retriever, check_squeezer
from expandsearch_verl.doctor.verl_config import check_batches, check_config, check_lengths, check_validate

Check = Callable[[Preflight], list[CheckResult]]

# (name, check), in the order they run; `--skip NAME` leaves one out.
CHECKS: list[tuple[str, Check]] = [
    ("config", check_config),
    ("validate", check_validate),
    ("batches", check_batches),
    ("lengths", check_lengths),
    ("reward", check_reward),
    ("agent-loop", check_agent_loop),
    ("model", check_models),
    ("gpu-memory", check_gpu_memory),
    ("logits", check_logits),
    ("train-data", check_train_data),
    ("val-data", check_val_data),
    ("retriever", check_retriever),
    ("squeezer", check_squeezer),
    ("plugin", check_plugin_install),
    ("verl", check_verl_internals),
    ("engine", check_rollout_engine),
    ("trainer", check_trainer),
    ("gpus", check_gpus),
    ("ray-nodes", check_ray_nodes),
]
CHECK_NAMES = [name for name, _ in CHECKS]
# The checks that mean something when verl's config did not compose; every other one is skipped then.
WITHOUT_CONFIG = frozenset({"config", "retriever", "squeezer", "plugin", "verl"})


def run_check(ctx: Preflight, name: str, check: Check) -> list[CheckResult]:
    """One check; `skip` when it needs the config that failed to compose, `fail` when it crashes."""
    if ctx.config is None and name not in WITHOUT_CONFIG:
        return [skipped(name, "needs the composed config")]
    try:
        return check(ctx)
    except Exception as exc:  # a bug or an odd environment in one check must not hide the others
        return [
            CheckResult(
                name,
                Status.FAIL,
                f"the check itself crashed: {type(exc).__name__}: {exc}",
                "report this with the command line; --skip it to see the rest",
            )
        ]


def run_checks(ctx: Preflight, skip: frozenset[str] = frozenset()) -> list[CheckResult]:
    """Every check in order; a skipped one reports `skip`, and a crashing one reports `fail`."""
    results: list[CheckResult] = []
    for name, check in CHECKS:
        results += [skipped(name, "--skip")] if name in skip else run_check(ctx, name, check)
    return results


__all__ = ["CHECKS", "CHECK_NAMES", "CheckResult", "Preflight", "Status", "run_check", "run_checks"]
