"""`expandsearch eval`: a checkpoint through the training agent loop, over a data_prep parquet.

    vllm serve CHECKPOINT --port 8001 --generation-config vllm   # the policy (any OpenAI-compatible server)
    python -m retriever_server serve ... --port 8000            # the retriever
    expandsearch eval data/test.parquet --policy-url http://127.0.0.1:8001 \\
        --retriever-url http://127.0.0.1:8000 --output-dir outputs/eval
    expandsearch eval data/test.parquet --policy-model CHECKPOINT_DIR ...   # or a local HF model / .gguf

It runs the very `ExpandSearchAgentLoop.run()` verl runs in training (built from the agent-loop
YAML through hydra, as `AgentLoopWorker` builds it), scores each trajectory with the training reward,
and writes `trajectories.jsonl` (one record per trajectory, appended as each finishes: a rerun
resumes) and `summary.json`, then prints the papers' table. Greedy decoding unless told otherwise.
Exit status: 0 done, 1 the policy or a trajectory failed (rerun to resume), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import httpx

from expandsearch_verl.agent_loop_config import shipped_path
from expandsearch_verl.config import AgentLoopConfig, ConfigError
from expandsearch_verl.evaluation.loop_builder import LoopBuilder, LoopConfigError
from expandsearch_verl.evaluation.policy import PolicyError
from expandsearch_verl.evaluation.results import ResultsDir, ResultsError, write_json_atomic
from expandsearch_verl.evaluation.rows import RowsError, read_rows
from expandsearch_verl.evaluation.runner import GREEDY, EvalPlan, RowFailed, run_evaluation
from expandsearch_verl.evaluation.summary import (
    PlotUnavailable,
    format_summary,
    plot_em,
    source_table,
    summarize,
)
from expandsearch_verl.rescore import parse_reward_kwargs

logger = logging.getLogger(__name__)


class SetupError(RuntimeError):
    """The evaluation cannot start (the policy or the retriever is not usable as given)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("parquet", type=Path, help="rows from `python -m data_prep` (e.g. test.parquet)")
    policy = parser.add_mutually_exclusive_group(required=True)
    policy.add_argument(
        "--policy-url", help="OpenAI-compatible server of the policy, e.g. http://127.0.0.1:8001"
    )
    policy.add_argument("--policy-model", help="local policy: an HF directory, a .gguf file, or `smollm2`")
    parser.add_argument("--policy-model-name", help="--policy-url: the served model (default: its only one)")
    parser.add_argument(
        "--tokenizer", help="the policy's tokenizer (default: the served checkpoint or the model)"
    )
    parser.add_argument(
        "--output-dir", type=Path, required=True, help="trajectories.jsonl and summary.json go here"
    )
    parser.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    parser.add_argument(
        "--retriever-url",
        action="append",
        default=[],
        metavar="URL",
        help="retriever_server base URL (repeatable); default: the agent-loop YAML's",
    )
    parser.add_argument(
        "--agent-loop-config",
        type=Path,
        default=None,
        help="agent-loop YAML (default: the shipped one; variants: expandsearch agent-loop-config)",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an agent-loop setting, e.g. --set topk=3 (repeatable)",
    )
    parser.add_argument("--prompt-length", type=int, default=4096, help="rollout.prompt_length, in tokens")
    parser.add_argument(
        "--response-length",
        type=int,
        default=3000,
        help="rollout.response_length: all turns and observations together (ExpandSearch: 3000)",
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy, as the papers evaluate")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=-1)
    parser.add_argument("--seed", type=int, help="--policy-url: sampling seed sent to the server")
    parser.add_argument("--concurrency", type=int, default=64, help="trajectories in flight")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="--policy-model: most generate calls per batch"
    )
    parser.add_argument("--device", default="auto", help="--policy-model: auto | cpu | cuda | cuda:N")
    parser.add_argument("--data-sources", help="comma list: evaluate only these data sources")
    parser.add_argument(
        "--max-per-dataset", type=int, help="evaluate only the first N rows of each data source"
    )
    parser.add_argument(
        "--reward-kwargs",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="reward table overrides, as in training (e.g. shaping=false)",
    )
    parser.add_argument(
        "--verl-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hydra override of verl's trainer config the loop reads, e.g. "
        "data.apply_chat_template_kwargs.enable_thinking=false",
    )
    parser.add_argument("--policy-timeout-s", type=float, default=600.0, help="--policy-url: per request")
    parser.add_argument(
        "--policy-retries", type=int, default=3, help="--policy-url: retries of a failed request"
    )
    parser.add_argument(
        "--plot", action="store_true", help="also write em_per_dataset.png (needs matplotlib)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        rows = read_rows(
            args.parquet,
            data_sources=[name.strip() for name in args.data_sources.split(",")]
            if args.data_sources
            else None,
            max_per_dataset=args.max_per_dataset,
        )
        reward_kwargs = parse_reward_kwargs(args.reward_kwargs)
        settings = _loop_settings(args)
        _check_numbers(args)
    except (RowsError, ConfigError, ValueError) as error:
        return _fail(error, 2)
    results = ResultsDir(args.output_dir)
    try:
        return asyncio.run(_evaluate(args, rows, settings, reward_kwargs, results))
    except KeyboardInterrupt:
        print(
            f"\nexpandsearch eval: interrupted; finished trajectories are in {results.trajectories}: "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


async def _evaluate(args, rows, settings, reward_kwargs, results: ResultsDir) -> int:
    async with contextlib.AsyncExitStack() as stack:
        try:  # everything that can be wrong before the first trajectory: bad input, status 2
            policy, tokenizer, model_path, context = await _open_policy(args)
            stack.push_async_callback(policy.aclose)
            if args.prompt_length + args.response_length > context:
                raise SetupError(
                    f"--prompt-length {args.prompt_length} + --response-length {args.response_length} exceeds "
                    f"the policy's context of {context} tokens: lower them (or serve a larger --max-model-len)"
                )
            builder = LoopBuilder(
                args.agent_loop_config or shipped_path(),
                tokenizer=tokenizer,
                model_path=model_path,
                prompt_length=args.prompt_length,
                response_length=args.response_length,
                settings=settings,
                verl_overrides=args.verl_override,
            )
            await _check_retrievers(builder)
            sampling = {**GREEDY, "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k}
            run_settings = {
                "parquet": str(args.parquet.resolve()),
                "policy": model_path if args.policy_model else policy.model,
                "agent_loops": builder.describe(),
                "sampling_params": sampling,
                "prompt_length": args.prompt_length,
                "response_length": args.response_length,
                "reward_kwargs": reward_kwargs,
                "verl_overrides": args.verl_override,
            }
            done = results.open(run_settings, overwrite=args.overwrite)
            stack.callback(results.close)
        except (SetupError, PolicyError, LoopConfigError, ResultsError, OSError, ValueError) as error:
            return _fail(error, 2)
        plan = EvalPlan(rows, builder, policy, sampling, args.concurrency, reward_kwargs)
        try:
            outcome = await run_evaluation(plan, results, done)
        except (PolicyError, RowFailed, OSError) as error:
            return _fail(error, 1, results)
    table = source_table(outcome.records)
    summary = summarize(outcome.records, run=run_settings, new=outcome.new, wall_s=outcome.wall_s)
    write_json_atomic(results.summary, summary)
    print(format_summary(summary, table))
    if args.plot:
        try:
            plot_em(table, results.plot)
        except PlotUnavailable as error:
            print(f"expandsearch eval: no plot: {error}", file=sys.stderr)
    written = [results.trajectories, results.summary] + ([results.plot] if results.plot.exists() else [])
    print("wrote " + ", ".join(map(str, written)))
    return 0


async def _open_policy(args) -> tuple[Any, Any, str, int]:
    """(policy, tokenizer, model path, context length in tokens)."""
    from transformers import AutoTokenizer

    if args.policy_model:
        from expandsearch_verl.evaluation.hf_policy import HFPolicy

        policy = await asyncio.to_thread(
            HFPolicy.load,
            args.policy_model,
            device=args.device,
            batch_size=args.batch_size,
            tokenizer=args.tokenizer,
        )
        return policy, policy.tokenizer, policy.model_path, policy.max_model_len
    from expandsearch_verl.evaluation.openai_policy import OpenAIPolicy

    policy = OpenAIPolicy(
        args.policy_url,
        model=args.policy_model_name,
        timeout_s=args.policy_timeout_s,
        retries=args.policy_retries,
        max_connections=args.concurrency,
        seed=args.seed,
    )
    try:
        served = await policy.served_model()
        path = args.tokenizer or next(
            (name for name in (served.root, served.id) if name and Path(name).expanduser().is_dir()), None
        )
        if path is None:
            raise SetupError(
                f"the server serves {served.id!r}, not a local directory: give its tokenizer with --tokenizer"
            )
        policy.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, path)
        await policy.check_tokenizer()
    except BaseException:
        await policy.aclose()
        raise
    return policy, policy.tokenizer, str(path), served.max_model_len or sys.maxsize


async def _check_retrievers(builder: LoopBuilder) -> None:
    """Refuse to start when no retriever of a loop answers at all (every search would fail)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        for name, config in builder.settings.items():
            reachable = []
            for url in config.retriever_urls:
                try:
                    await client.get(url.rstrip("/") + "/health")
                    reachable.append(url)
                except httpx.HTTPError as error:
                    logger.warning("retriever %s cannot be reached (%s)", url, type(error).__name__)
            if not reachable:
                raise SetupError(
                    f"no retriever of agent loop {name!r} can be reached ({', '.join(config.retriever_urls)}): "
                    "start one (python -m retriever_server serve ...) or give --retriever-url"
                )


def _loop_settings(args) -> dict[str, Any]:
    """--set and --retriever-url as agent-loop values, checked against the settings' types and limits."""
    config = AgentLoopConfig().with_overrides(args.assignments)  # parses and checks every value
    settings = {
        key: getattr(config, key) for key in (item.partition("=")[0].strip() for item in args.assignments)
    }
    if args.retriever_url:
        urls = [url.strip() for value in args.retriever_url for url in value.split(",") if url.strip()]
        settings["retriever_urls"] = AgentLoopConfig.from_kwargs(retriever_urls=urls).retriever_urls
    return settings


def _check_numbers(args) -> None:
    for name in ("concurrency", "batch_size", "prompt_length", "response_length"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: {getattr(args, name)} must be >= 1")
    if args.temperature < 0:
        raise ValueError(f"--temperature: {args.temperature} must be >= 0")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p: {args.top_p} must be in (0, 1]")
    if args.policy_retries < 0 or args.policy_timeout_s <= 0:
        raise ValueError("--policy-retries must be >= 0 and --policy-timeout-s > 0")


def _fail(error: BaseException, status: int, results: ResultsDir | None = None) -> int:
    print(f"expandsearch eval: error: {error}", file=sys.stderr)
    if results is not None and results.trajectories.exists() and status == 1:
        print(
            f"finished trajectories are in {results.trajectories}: rerun the same command to resume",
            file=sys.stderr,
        )
    return status
