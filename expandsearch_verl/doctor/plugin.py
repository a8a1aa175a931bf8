"""Checks on the two hooks the plugin gives verl: the reward function and the agent-loop YAML.

Both are imported by name inside Ray workers, where an import error or a bad knob surfaces only
after the models are loaded; here they are imported, the reward is called once with its
`reward_kwargs`, and every ExpandSearch entry's knobs go through the loop's own `AgentLoopConfig`.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
from numbers import Real
from typing import Any

from expandsearch_verl.doctor.context import Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed, warned

REWARD_PATH = "pkg://expandsearch_verl.reward"
AGENT_LOOP_KEY = "actor_rollout_ref.rollout.agent.agent_loop_config_path"
INSTALL_FIX = "pip install -e . (this repository) in the Python environment of every node: Ray workers import it by name"
# A correct, well-formed `tags` trajectory: any reward should score it, and ours gives it the top cell.
SAMPLE_RESPONSE = "<think>The capital of France is Paris.</think>\n<answer>Paris</answer>"


def check_reward(ctx: Preflight) -> list[CheckResult]:
    """Import `reward.custom_reward_function` and score one sample with its `reward_kwargs`."""
    name = "reward"
    from verl.experimental.reward_loop.reward_loop import migrate_legacy_reward_impl
    from verl.utils.import_utils import load_extern_object

    spec = migrate_legacy_reward_impl(copy.deepcopy(ctx.config)).reward.custom_reward_function
    path, function = spec.get("path"), spec.get("name") or "compute_score"
    kwargs = dict(spec.get("reward_kwargs") or {})
    if not path:
        return [
            failed(
                name,
                "reward.custom_reward_function.path is not set: verl's built-in scorer has no rule for nq, hotpotqa, ...",
                f"reward.custom_reward_function.path={REWARD_PATH}",
            )
        ]
    try:
        score_fn = load_extern_object(module_path=path, object_name=function)
    except Exception as exc:
        return [
            failed(
                name,
                f"cannot load {function} from {path}: {type(exc).__name__}: {exc}",
                INSTALL_FIX
                if path.startswith("pkg://")
                else "use an absolute path that exists on every node",
            )
        ]
    try:
        result = score_fn(
            data_source="nq",
            solution_str=SAMPLE_RESPONSE,
            ground_truth={"target": ["Paris"]},
            extra_info={"index": 0, "protocol": "tags"},
            **kwargs,
        )
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except Exception as exc:
        return [
            failed(
                name,
                f"{function} raised on a sample with reward_kwargs {kwargs}: {type(exc).__name__}: {exc}",
                "correct the +reward.custom_reward_function.reward_kwargs.<key> the message names",
            )
        ]
    score = result.get("score") if isinstance(result, dict) else result
    if not isinstance(score, Real) or isinstance(score, bool):
        return [
            failed(
                name,
                f"{function} returned {result!r}: verl needs a number or a dict with a numeric 'score'",
                "return a float, or a dict with the same keys for every sample and a 'score'",
            )
        ]
    shown = ", ".join(f"{key}={value}" for key, value in kwargs.items()) or "the defaults"
    return [
        passed(
            name,
            f"{path}:{function} loads and scores a correct sample {float(score):g} (reward_kwargs: {shown})",
        )
    ]


def check_agent_loop(ctx: Preflight) -> list[CheckResult]:
    """Load the agent-loop YAML as verl's workers do, import every `_target_`, validate our knobs."""
    name = "agent-loop"
    from omegaconf import ListConfig, OmegaConf
    from verl.utils.import_utils import resolve_config_path

    ctx.agent_loops = {}
    path = ctx.select(AGENT_LOOP_KEY)
    if not path:
        return [
            failed(
                name,
                f"{AGENT_LOOP_KEY} is not set: verl knows only its built-in loops, so rows naming expandsearch_agent fail",
                f"{AGENT_LOOP_KEY}=$(expandsearch agent-loop-config)",
            )
        ]
    results = []
    if not os.path.isabs(path):
        results.append(
            warned(
                name,
                f"{AGENT_LOOP_KEY}={path} is relative: each Ray worker resolves it against its own working directory",
                "pass an absolute path (recipes write one under RUN_DIR)",
            )
        )
    try:
        resolved = resolve_config_path(path)
        entries = OmegaConf.load(resolved)
    except Exception as exc:
        return [
            *results,
            failed(
                name,
                f"cannot read {path}: {type(exc).__name__}: {exc}",
                "write it with: expandsearch agent-loop-config --set KEY=VALUE ... --output ABSOLUTE_PATH",
            ),
        ]
    if not isinstance(entries, ListConfig) or not all(_is_entry(entry) for entry in entries):
        return [
            *results,
            failed(
                name,
                f"{resolved} is not a YAML list of entries with 'name' and '_target_'",
                "start from the shipped file: expandsearch agent-loop-config",
            ),
        ]
    for entry in entries:
        problem = _check_entry(ctx, OmegaConf.to_container(entry, resolve=True), resolved)
        if problem is not None:
            results.append(problem)
    if any(result.status == "fail" for result in results):
        return results
    described = "; ".join(
        f"{loop_name}: {_describe(loop)}" for loop_name, loop in ctx.expandsearch_loops.items()
    )
    results.append(
        passed(
            name, f"{resolved} defines {sorted(ctx.agent_loops)}" + (f"; {described}" if described else "")
        )
    )
    results += _response_budget(ctx)
    return results


def _check_entry(ctx: Preflight, entry: dict[str, Any], path: str) -> CheckResult | None:
    """Import one entry's class; for ExpandSearch entries build the validated `AgentLoopConfig`."""
    import hydra
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase, _agent_loop_registry

    name, target = str(entry["name"]), str(entry["_target_"])
    try:
        loop_class = hydra.utils.get_class(target)
    except Exception as exc:
        cause = exc.__cause__ or exc
        return failed(
            "agent-loop", f"{name}: cannot import {target}: {type(cause).__name__}: {cause}", INSTALL_FIX
        )
    if not issubclass(loop_class, AgentLoopBase):
        return failed(
            "agent-loop",
            f"{name}: {target} is not a verl AgentLoopBase subclass",
            "point _target_ at an agent-loop class",
        )
    if _agent_loop_registry.get(name) == {"_target_": target}:  # reach `register_replaces_yaml_entry`
        return failed(
            "agent-loop",
            f"{name}: {target} registers itself with @register('{name}'), which replaces this entry's "
            "settings in the workers (verl 0.9.1)",
            "remove the @register decorator; the YAML registers the loop",
        )
    ctx.agent_loops[name] = entry
    from expandsearch_verl.agent_loop import ExpandSearchAgentLoop
    from expandsearch_verl.config import AgentLoopConfig, ConfigError

    if not issubclass(loop_class, ExpandSearchAgentLoop):
        return None
    try:
        knobs = {key: value for key, value in entry.items() if key not in ("name", "_target_")}
        ctx.expandsearch_loops[name] = AgentLoopConfig.from_kwargs(**knobs)
    except ConfigError as exc:
        return failed(
            "agent-loop",
            f"{name} in {path}: " + " ".join(str(exc).split()),
            f"rewrite it: expandsearch agent-loop-config --set KEY=VALUE ... --output {path}",
        )
    return None


def _response_budget(ctx: Preflight) -> list[CheckResult]:
    """Warn when the observations alone can use up the response budget of every turn."""
    response_length = ctx.select("actor_rollout_ref.rollout.response_length")
    results = []
    for loop_name, loop in ctx.expandsearch_loops.items():
        observations = loop.max_observation_tokens * max(loop.max_turns - 1, 0)
        if response_length is not None and observations >= response_length:
            results.append(
                warned(
                    "agent-loop",
                    f"{loop_name}: {loop.max_turns - 1} observations of up to {loop.max_observation_tokens} "
                    f"tokens can fill the whole response budget ({response_length} tokens), leaving none for the answer",
                    "raise data.max_response_length or lower max_observation_tokens",
                )
            )
    return results


def _describe(loop: Any) -> str:
    squeeze = {True: "squeezed", False: "not squeezed", None: "squeezed as the server defaults"}[loop.squeeze]
    return (
        f"protocol {loop.protocol}, {loop.max_queries} quer{'y' if loop.max_queries == 1 else 'ies'} x topk {loop.topk} per search, "
        f"{squeeze}, {loop.max_turns} turns, retrievers {loop.retriever_urls}"
    )


def _is_entry(entry: Any) -> bool:
    return hasattr(entry, "get") and bool(entry.get("name")) and bool(entry.get("_target_"))


async def _await(awaitable: Any) -> Any:
    return await awaitable
