"""`expandsearch demo`: the whole system on a fresh CPU machine, offline; a policy trained here.

    expandsearch demo              # train (cached) and compare; hf squeezer; --fast: extractive squeezer
    expandsearch demo --no-train   # SmolLM2-135M-Instruct as shipped only (the five steps below)

By default the policy is trained on this machine before it is compared, on the same unseen TEST
questions (data_prep's test split; nothing is trained on them): SmolLM2 as shipped, after the format
warm start (the deterministic teacher's trajectories of the TRAIN questions through the real agent
loop, `warm_start.build`; verl's SFT trainer on the CPU backend, `warm_start.finetune`) and after
GRPO through verl on CPU from the warm start (`recipes/train_tiny_cpu.sh`). Both trainings are
cached, so a second demo only evaluates. A before/after table (searches per trajectory, queries per
search, squeezed fraction, format, EM, F1) and one trajectory of the last policy follow; the live
search turn only when that policy never searched. `--policy-model` swaps the policy trained from.

`--no-train`: data_prep; `python -m retriever_server serve --demo` (dense MiniLM + BM25 indexes of
the shipped sample corpus, cached after the first build) as a child process; `expandsearch eval`
with the policy; one trajectory printed with its masked observation tokens marked; then, while the
server is still up, one live search turn for that trajectory's question (SmolLM2 as shipped never
writes a well-formed search). The first run converts the SmolLM2 GGUF once (cached), before the
server starts, so the server and the policy do not both convert it on 2 cores.

Ctrl-C or SIGTERM stops cleanly: the server is shut down (SIGTERM, then kill), parquet and summary
files are written atomically and trajectories a whole line at a time; `--resume` continues an
interrupted evaluation. Exit status: 0 done, 1 a step failed, 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.evaluation.demo_training import TrainingFailed
from expandsearch_verl.evaluation.results import SUMMARY, TRAJECTORIES, load_records
from expandsearch_verl.evaluation.search_turn import render_turn, search_turn
from expandsearch_verl.evaluation.trajectory_view import pick_example, render
from expandsearch_verl.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from expandsearch_verl.retriever_client import SearchError

logger = logging.getLogger(__name__)

POLICY = SQUEEZER = "smollm2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs/demo"), help="data/ and eval/ go here"
    )
    parser.add_argument(
        "--questions-per-dataset", type=int, default=1, help="sample questions of each dataset"
    )
    parser.add_argument("--fast", action="store_true", help="extractive squeezer instead of SmolLM2 (faster)")
    parser.add_argument(
        "--policy-model", default=POLICY, help="the policy: smollm2, an HF directory or a .gguf"
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL, help="action protocol")
    parser.add_argument("--topk", type=int, default=3, help="documents per query variant")
    parser.add_argument("--max-turns", type=int, default=3, help="policy turns per trajectory")
    parser.add_argument(
        "--response-length", type=int, default=None, help="response budget in tokens (512; --no-train: 256)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="trajectories in flight (one batch)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the last run instead of starting again"
    )
    parser.add_argument(
        "--no-train", action="store_true", help="SmolLM2 as shipped only (no warm start, no GRPO)"
    )
    parser.add_argument("--sft-steps", type=int, default=32, help="warm-start (SFT) steps, batch 4")
    parser.add_argument("--grpo-steps", type=int, default=1, help="GRPO steps after the warm start; 0: none")


def run(args: argparse.Namespace) -> int:
    if args.questions_per_dataset < 1:
        print(f"expandsearch demo: error: --questions-per-dataset {args.questions_per_dataset} must be >= 1",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.sft_steps < 1 or args.grpo_steps < 0:
        print(f"expandsearch demo: error: --sft-steps {args.sft_steps} must be >= 1 and --grpo-steps "
              f"{args.grpo_steps} >= 0", file=sys.stderr)  # fmt: skip
        return 2
    started = time.perf_counter()
    trains = not args.no_train
    if args.response_length is None:
        args.response_length = 256 if args.no_train else 512  # 512: room for two searches (warm_start.build)
    try:
        with _sigterm_as_interrupt():
            status = _trained_pipeline(args) if trains else _pipeline(args)
    except KeyboardInterrupt:
        print("\nexpandsearch demo: interrupted; the retriever server is stopped", file=sys.stderr)
        return 130
    except TrainingFailed as error:
        print(f"expandsearch demo: {error}", file=sys.stderr)
        return 1
    if status == 0:
        print(f"\ndemo finished in {time.perf_counter() - started:.0f} s")
    return status


# The SmolLM2 squeezer answers concurrent searches in one batch: ~8 s for one, past the server's 30 s
# default for seven on 2 shared cores, after which the server answers with the passages; the demo's
# squeezed fraction would then measure the machine's load, not the policy. So the demo's server
# waits longer, and the loop's searches wait for it.
SQUEEZE_BUDGET_S = 150
SEARCH_TIMEOUT = f"timeout_s={SQUEEZE_BUDGET_S + 30}"


def _serve_args(squeezer: str) -> list[str]:
    """`retriever_server serve` for the demo: the sample corpus, both indexes, `squeezer`."""
    return [
        "--demo", "--retriever", "dense,bm25", "--squeezer", squeezer, "--squeezer-max-tokens", "96",
        "--squeeze-timeout-s", str(SQUEEZE_BUDGET_S),
    ]  # fmt: skip


def _pipeline(args: argparse.Namespace) -> int:
    from data_prep.cli import main as data_prep
    from expandsearch_verl.cli import main as expandsearch
    from retriever_server.models import hf_source
    from retriever_server.process import ServerProcess

    data_dir, eval_dir = args.output_dir / "data", args.output_dir / "eval"
    _step(f"1/5 data_prep: {args.questions_per_dataset} sample questions per dataset -> {data_dir}")
    prep = ["--output-dir", str(data_dir), "--train-datasets", "", "--protocol", args.protocol]
    if data_prep([*prep, "--max-per-dataset", str(args.questions_per_dataset), "--overwrite"]) != 0:
        return 1
    squeezer = "extractive" if args.fast else "hf"
    _step(f"2/5 retriever server: sample corpus, dense (MiniLM) + BM25 indexes, {squeezer} squeezer")
    for model in {args.policy_model, *([] if args.fast else [SQUEEZER])}:
        hf_source(model)  # GGUF conversions, once (cached), before two processes would both convert
    serve = _serve_args(squeezer)
    settings = [
        f"topk={args.topk}",
        f"max_turns={args.max_turns}",
        "max_observation_tokens=192",
        SEARCH_TIMEOUT,
    ]
    with ServerProcess(serve) as server:
        _step(
            f"3/5 expandsearch eval: {args.policy_model} as the policy, retriever {server.url} -> {eval_dir}"
        )
        status = expandsearch([
            "eval", str(data_dir / "test.parquet"), "--policy-model", args.policy_model,
            "--retriever-url", server.url, "--output-dir", str(eval_dir),
            *(option for setting in settings for option in ("--set", setting)), "--prompt-length", "1024",
            "--response-length", str(args.response_length), "--concurrency", str(args.concurrency),
            "--batch-size", str(args.concurrency), *([] if args.resume else ["--overwrite"]),
        ])  # fmt: skip
        if status != 0:
            return 130 if status == 130 else 1
        records = load_records(eval_dir / TRAJECTORIES)
        if records and not any(record["searches"] for record in records):
            print(f"note: no trajectory searched: {args.policy_model} is a tiny policy that rarely writes "
                  "a well-formed search; step 5 shows one search turn for it")  # fmt: skip
        _step("4/5 one trajectory")
        example = pick_example(records)
        if example is None:
            return 0
        print(render(example, color=sys.stdout.isatty()))
        _step("5/5 a search turn, live")
        config = AgentLoopConfig().with_overrides(
            [*settings, f"retriever_urls={server.url}", f"protocol={args.protocol}"]
        )
        policy = "SmolLM2-135M" if args.policy_model == POLICY else args.policy_model
        _print_search_turn(example["question"], policy, hf_source(args.policy_model), config)
    print(f"\nfiles: {data_dir / 'test.parquet'}, {eval_dir / TRAJECTORIES}, {eval_dir / SUMMARY}")
    return 0


def _evaluate(policy: str, data_dir: Path, eval_dir: Path, server_url: str, args, settings: list[str]) -> int:
    """`expandsearch eval` of one policy on the demo's test questions."""
    from expandsearch_verl.cli import main as expandsearch

    return expandsearch([
        "eval", str(data_dir / "test.parquet"), "--policy-model", policy, "--retriever-url", server_url,
        "--output-dir", str(eval_dir), *(option for setting in settings for option in ("--set", setting)),
        "--prompt-length", "1024", "--response-length", str(args.response_length),
        "--concurrency", str(args.concurrency), "--batch-size", str(args.concurrency),
        *([] if args.resume else ["--overwrite"]),
    ])  # fmt: skip


def _trained_pipeline(args: argparse.Namespace) -> int:
    """Train the policy here (warm start, then GRPO, both through verl on CPU, cached) and compare."""
    from data_prep.cli import main as data_prep
    from expandsearch_verl.evaluation import demo_training as training
    from retriever_server.models import hf_source
    from retriever_server.process import ServerProcess
    from retriever_server.settings import default_cache_dir

    data_dir, eval_dir, train_dir = (args.output_dir / name for name in ("data", "eval", "train"))
    cache_dir = Path(default_cache_dir())
    total = 6 if args.grpo_steps else 5  # steps printed
    _step(
        f"1/{total} data_prep: {args.questions_per_dataset} TEST questions per dataset (never trained on) -> {data_dir}"
    )
    prep = ["--output-dir", str(data_dir), "--train-datasets", "", "--protocol", "tags"]
    if data_prep([*prep, "--max-per-dataset", str(args.questions_per_dataset), "--overwrite"]) != 0:
        return 1
    squeezer = "extractive" if args.fast else "hf"
    _step(f"2/{total} retriever server: sample corpus, dense (MiniLM) + BM25 indexes, {squeezer} squeezer")
    base = hf_source(args.policy_model)
    if not args.fast:
        hf_source(SQUEEZER)
    serve = _serve_args(squeezer)
    # the warm start's budgets (warm_start.build): every policy is evaluated with the ones it learnt
    settings = [f"topk={args.topk}", f"max_turns={args.max_turns}", "max_observation_tokens=160"]
    evaluation = [*settings, SEARCH_TIMEOUT]
    name = "SmolLM2 as shipped" if args.policy_model == POLICY else f"{args.policy_model} as given"
    policies: list[tuple[str, str, Path]] = []
    status = 0
    with ServerProcess(serve) as server:
        _step(f"3/{total} expandsearch eval: {name}")
        if _evaluate(base, data_dir, eval_dir / "shipped", server.url, args, evaluation) != 0:
            return 1
        policies.append((name, base, eval_dir / "shipped"))
        _step(f"4/{total} warm start: verl's SFT trainer on CPU, {args.sft_steps} steps over the teacher's "
              f"trajectories of the TRAIN questions ({training.eta(args.sft_steps * 10 + 60)} on 2 cores; cached after)")  # fmt: skip
        # raw documents, not the squeezer's summaries: the same examples (and cache key) on every run
        examples = training.build_examples(
            server.url,
            args.policy_model,
            train_dir / "examples",
            [*settings, "squeeze=false"],
            args.response_length,
        )
        warm, cached = training.warm_start(examples, base, args.sft_steps, train_dir / "sft", cache_dir)
        print(f"warm start {'from the cache' if cached else 'trained'}: {warm}")
        if _evaluate(str(warm), data_dir, eval_dir / "warm_start", server.url, args, evaluation) != 0:
            return 1
        policies.append(("after the warm start", str(warm), eval_dir / "warm_start"))
        if args.grpo_steps:
            _step(f"5/{total} GRPO through verl on CPU from the warm start: {args.grpo_steps} step(s), batch 2 x "
                  f"group 2 (recipes/train_tiny_cpu.sh; {training.eta(90 * args.grpo_steps + 30)}; cached after)")  # fmt: skip
            try:
                tuned, cached = training.grpo(
                    warm, server.url, squeezer, args.grpo_steps, train_dir / "grpo", cache_dir
                )
            except TrainingFailed as error:  # the table still shows the warm start; the exit status says it
                print(f"expandsearch demo: {error}", file=sys.stderr)
                status = 1
            else:
                print(f"GRPO policy {'from the cache' if cached else 'trained'}: {tuned}")
                if _evaluate(str(tuned), data_dir, eval_dir / "grpo", server.url, args, evaluation) != 0:
                    return 1
                policies.append((f"after {args.grpo_steps} GRPO step(s)", str(tuned), eval_dir / "grpo"))
        _step(f"{total}/{total} before and after, on the same unseen test questions")
        summaries = [(label, json.loads((where / SUMMARY).read_text())) for label, _, where in policies]
        print(training.before_after(summaries))
        label, policy, where = policies[-1]
        records = load_records(where / TRAJECTORIES)
        example = pick_example(records)
        if example is not None:
            print(f"\none trajectory of the policy {label}:")
            print(render(example, color=sys.stdout.isatty()))
            if not any(record["searches"] for record in records):
                config = AgentLoopConfig().with_overrides(
                    [*evaluation, f"retriever_urls={server.url}", "protocol=tags"]
                )
                _print_search_turn(example["question"], label, policy, config)
    print(f"\nfiles: {data_dir / 'test.parquet'}, {eval_dir}/*/{TRAJECTORIES}, {eval_dir}/*/{SUMMARY}")
    return status


def _print_search_turn(question: str, policy: str, model_path: str, config: AgentLoopConfig) -> None:
    """One live `/search` for the example's question, shown as the loop would insert it; a failure
    is printed, not raised (the evaluation has already succeeded)."""
    from transformers import AutoTokenizer

    print(
        f"{policy} rarely writes a well-formed search; this is what one search turn of the agent "
        f"loop returns for this question:\n{question}\n"
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        turn = asyncio.run(search_turn(question, tokenizer, config))
    except (SearchError, OSError, ValueError) as error:
        print(f"the search turn failed: {error}")
        return
    print(render_turn(turn))


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes Ctrl-C's path: the same cleanup (server stopped, nothing half-written)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
