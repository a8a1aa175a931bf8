"""The search metrics of every training step, in verl's logged metrics.

verl 0.9.1's legacy trainer (`trainer.use_v1=false`, the recipes' setting) logs only two
per-trajectory statistics of an agent loop while training: `num_turns/*` and
`tool_call_counts/*` (`compute_data_metrics`); every other column of the batch, our
`extra_fields` and the reward's keys included, reaches the logs in validation only. What it does
log from the rollout is the manager's `meta_info["timing"]`, each entry as `timing_s/<name>`:
verl's own agent-loop statistics travel that way (`timing_s/agent_loop/num_preempted/mean`).

So `SearchMetricsAgentLoopManager`, verl's `AgentLoopManager` selected through its documented knob

    +actor_rollout_ref.rollout.agent.agent_loop_manager_class=expandsearch_verl.search_metrics.SearchMetricsAgentLoopManager

adds `search_step_metrics` of each generated batch to that dict. The trainer then logs, at every
step, `timing_s/` + each key of `STEP_METRIC_KEYS` (`timing_s/search/queries/mean`, ...).

What this relies on in verl 0.9.1 are the reaches of user `search metrics` in
`expandsearch_verl.verl_internals`; the manager checks them when verl's trainer builds it, so a
verl whose trainer no longer logs them fails before the first step. The V1 trainer
(`trainer.use_v1=true`) needs a TransferQueue manager instead; the recipes set the knob only with
the legacy trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from verl.experimental.agent_loop.agent_loop import AgentLoopManager
from verl.protocol import DataProto
from verl.utils.ray_utils import auto_await

from expandsearch_verl.verl_internals import SEARCH_METRICS, check_verl

MANAGER_CLASS = f"{__name__}.SearchMetricsAgentLoopManager"
LOGGED_PREFIX = "timing_s/"  # what verl's compute_timing_metrics puts before each timing entry

# Per-trajectory counts (extra_fields key -> metric name), logged as mean, min and max over the batch.
_PER_TRAJECTORY = {
    "num_searches": "searches",
    "num_queries": "queries",
    "search_failures": "failures",
    "squeeze_fallbacks": "squeeze_fallbacks",
    "invalid_actions": "invalid_actions",
    "observation_tokens": "observation_tokens",
    "num_unique_docs": "unique_docs",
}
_STATS = ("mean", "min", "max")
# Ratios over the whole step (searches of all trajectories together).
_STEP_RATIOS = ("queries_per_search", "failure_rate", "squeezed_fraction", "latency_ms")

STEP_METRIC_KEYS: tuple[str, ...] = (
    *(f"search/{name}/{stat}" for name in _PER_TRAJECTORY.values() for stat in _STATS),
    "search/retrieval_hit/mean",
    *(f"search/{name}" for name in _STEP_RATIOS),
)


def search_step_metrics(columns: Mapping[str, Any]) -> dict[str, float]:
    """The step's search metrics from the batch's non-tensor columns (the loop's `extra_fields`).

    Returns {} for a batch our loop did not produce (no `num_searches` column).

    Keys (STEP_METRIC_KEYS): `search/<count>/{mean,min,max}` per trajectory for searches, queries,
    failures (searches that failed after every retry), squeeze_fallbacks (searches the server answered
    with passages because its squeezer failed or ran past its budget), invalid_actions (turns with neither a proper
    search nor an answer), observation_tokens (mask-0 tokens) and unique_docs;
    `search/retrieval_hit/mean` (share of trajectories where a gold answer was in a retrieved
    passage); and over all searches of the step: `search/queries_per_search`,
    `search/failure_rate`, `search/squeezed_fraction` (of the searches that succeeded) and
    `search/latency_ms` (mean /search round trip).
    """
    if "num_searches" not in columns:
        return {}

    def column(key: str) -> np.ndarray:
        return np.asarray(columns[key], dtype=np.float64)

    metrics: dict[str, float] = {}
    for key, name in _PER_TRAJECTORY.items():
        values = column(key)
        metrics.update({f"search/{name}/{stat}": float(getattr(values, stat)()) for stat in _STATS})
    metrics["search/retrieval_hit/mean"] = float(column("retrieval_hit").mean())

    searches, failures = column("num_searches"), column("search_failures")
    succeeded = searches - failures
    total, total_ok = searches.sum(), succeeded.sum()
    metrics["search/queries_per_search"] = _ratio(column("num_queries").sum(), total)
    metrics["search/failure_rate"] = _ratio(failures.sum(), total)
    metrics["search/squeezed_fraction"] = _ratio((column("squeezed_fraction") * succeeded).sum(), total_ok)
    metrics["search/latency_ms"] = _ratio((column("search_latency_ms") * searches).sum(), total)
    return metrics


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


class SearchMetricsAgentLoopManager(AgentLoopManager):
    """verl's AgentLoopManager, whose output also carries the step's search metrics (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_verl(SEARCH_METRICS)  # loud, before the first step, rather than steps without the metrics
        super().__init__(*args, **kwargs)

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        output = await super().generate_sequences(prompts)
        output.meta_info.setdefault("timing", {}).update(search_step_metrics(output.non_tensor_batch))
        return output
