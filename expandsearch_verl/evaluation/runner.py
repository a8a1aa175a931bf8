"""`run_evaluation`: every pending row through the agent loop, concurrently, into the results file.

Up to `concurrency` trajectories run at once on one event loop, as one `AgentLoopWorker` runs
them. Each gets a fresh loop from the builder, with a `TrajectoryCalls` around the policy, and its
record is appended the moment it finishes. Rows already in the output are skipped (resuming).

A policy failure stops the run: the running trajectories are cancelled (nothing of them is
written) and the finished ones stay for the rerun. A search failure does not: the loop turns it
into an observation, the trajectory goes on, and the record counts it in `search_failures`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from expandsearch_verl.evaluation.loop_builder import LoopBuilder
from expandsearch_verl.evaluation.policy import Policy, PolicyError, TrajectoryCalls
from expandsearch_verl.evaluation.records import build_record
from expandsearch_verl.evaluation.results import ResultsDir
from expandsearch_verl.evaluation.rows import EvalRow
from expandsearch_verl.protocols import PROTOCOLS, QueryLimits
from expandsearch_verl.retriever_client import close_shared_clients

# The papers evaluate greedily (verl's validation: val_kwargs temperature 0, top_p 1, top_k -1).
GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}


class RowFailed(RuntimeError):
    """A trajectory raised something other than a policy failure; the message names the row."""


@dataclass
class EvalPlan:
    rows: list[EvalRow]
    builder: LoopBuilder
    policy: Policy
    sampling_params: dict[str, Any] = field(default_factory=lambda: dict(GREEDY))
    concurrency: int = 64  # trajectories in flight
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    progress: bool = True  # a progress bar on stderr (off when it is not a terminal)


@dataclass
class EvalOutcome:
    records: list[dict[str, Any]]  # every record in the output, the resumed ones first
    new: int  # evaluated in this run
    wall_s: float  # this run's evaluation time


async def run_evaluation(plan: EvalPlan, results: ResultsDir, done: list[dict[str, Any]]) -> EvalOutcome:
    """Evaluate the rows of `plan` not in `done`, appending each record to `results`.

    Raises:
        PolicyError: the policy failed; the records written so far stay.
        RowFailed: a trajectory failed otherwise (a bug, or a row the loop refused).
    """
    if plan.concurrency < 1:
        raise ValueError(f"--concurrency: {plan.concurrency} must be >= 1")
    finished = {(record["data_source"], str(record["id"])) for record in done}
    pending = deque(row for row in plan.rows if row.key not in finished)
    records = list(done)
    skipped = len(plan.rows) - len(pending)
    bar = tqdm(
        total=len(plan.rows),
        initial=skipped,
        desc="eval",
        unit="traj",
        disable=None if plan.progress else True,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    started = time.perf_counter()

    async def worker() -> None:
        while pending:
            row = pending.popleft()
            record = await _evaluate(plan, row)
            results.append(record)
            records.append(record)
            bar.update(1)
            bar.set_postfix(em=f"{sum(r['em'] for r in records) / len(records):.3f}", refresh=False)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(plan.concurrency, len(pending))):
                group.create_task(worker())
    except ExceptionGroup as failures:  # the first failure stopped the others
        raise failures.exceptions[0] from None
    finally:
        bar.close()
        await close_shared_clients()
    return EvalOutcome(records, len(records) - len(done), time.perf_counter() - started)


async def _evaluate(plan: EvalPlan, row: EvalRow) -> dict[str, Any]:
    name = plan.builder.resolve_name(row.agent_name)
    settings = plan.builder.settings[name]
    calls = TrajectoryCalls(plan.policy)
    started = time.perf_counter()
    try:
        loop = plan.builder.build(name, calls)
        output = await loop.run(dict(plan.sampling_params), **row.run_kwargs)
    except (PolicyError, asyncio.CancelledError):
        raise
    except Exception as error:
        raise RowFailed(f"{row.data_source}/{row.id}: {type(error).__name__}: {error}") from error
    row_protocol = row.run_kwargs["extra_info"].get("protocol")
    return build_record(
        row,
        output,
        calls.calls,
        tokenizer=plan.builder.tokenizer,
        protocol=row_protocol if row_protocol in PROTOCOLS else settings.protocol,  # as the loop picks it
        limits=QueryLimits(settings.max_queries, settings.max_query_chars),
        seconds=time.perf_counter() - started,
        reward_kwargs=plan.reward_kwargs,
    )
