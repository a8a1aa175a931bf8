"""Agent-loop benchmarks: the loop's own cost per turn, and many trajectories against one server.

    python benchmarks/bench_agent_loop.py                      # starts `retriever_server serve --demo`
                                                               # (its result cache off)
    python benchmarks/bench_agent_loop.py --retriever-url http://127.0.0.1:8000   # a running server

1. Overhead: `--trajectories` trajectories run one after another, each `--turns` turns (searches,
   then an answer), with an instant generator (pre-tokenized turns, no model). Per turn, the loop's
   own time: the whole `run()` minus the time inside `generate` and inside the search call, so it
   counts prompt rendering, decoding, parsing, observation formatting and tokenization, the chat
   builder (tool_call) and bookkeeping. The hydra instantiation verl does per trajectory is timed
   apart. Both protocols.
2. Concurrency: `--concurrency` trajectories at once on one event loop (as one AgentLoopWorker runs
   them), the same instant generator, every search a real `/search` to the server: trajectories/s,
   searches/s and the latency of each search call (p50/p99, retries included).

The policy's tokenizer is SmolLM2's (49k-token byte-level BPE, ChatML), converted once from the
offline GGUF and cached; the chat builder is verl's Qwen one (ChatML), as for Qwen2.5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import OmegaConf
from transformers import AutoTokenizer
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, DictConfigWrap, ToolListWrap
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from expandsearch_verl import observation, retriever_client
from expandsearch_verl.agent_loop_config import shipped_path
from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.evaluation.loop_builder import compose_trainer_config
from retriever_server.models import hf_source
from retriever_server.process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
THOUGHT = (
    "The question asks for one fact that depends on another, so I should first find the entity it "
    "refers to and then look up the detail. I will phrase the need in several complementary ways."
)


class InstantPolicy:
    """`LLMServerClient.generate` without a model: returns one trajectory's pre-tokenized turns."""

    def __init__(self, turns: list[list[int]]):
        self.turns, self.calls = turns, 0

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict, **kwargs: Any):
        token_ids = self.turns[min(self.calls, len(self.turns) - 1)][: sampling_params["max_tokens"]]
        self.calls += 1
        return TokenOutput(token_ids=token_ids, log_probs=[-0.1] * len(token_ids), stop_reason="completed")


def sample_questions() -> list[str]:
    questions = []
    for path in sorted((ROOT / "data_prep" / "samples").glob("*/*.jsonl")):
        questions += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    return questions


def script_queries(question: str, search: int) -> list[str]:
    """Three variants of the question for search number `search` (later searches differ a little)."""
    words = [word.strip("?,.") for word in question.split()]
    variants = [question, " ".join(w for w in words if len(w) > 3), " ".join(words[-4:])]
    return [f"{variant} {search}" if search else variant for variant in variants]


def script(question: str, protocol: str, searches: int, tokenizer) -> list[list[int]]:
    """Turns of one trajectory: `searches` searches with 3 variants each, then an answer."""
    turns = []
    for number in range(searches):
        queries = script_queries(question, number)
        if protocol == "tags":
            action = "<search>\n" + "\n".join(queries) + "\n</search>"
        else:
            call = json.dumps({"name": "search", "arguments": {"query_list": queries}})
            action = f"<tool_call>\n{call}\n</tool_call>"
        turns.append(f"<think>{THOUGHT}</think>\n{action}")
    turns.append(f"<think>{THOUGHT}</think>\n<answer> {question.split()[-1].strip('?')} </answer>")
    return [tokenizer.encode(turn, add_special_tokens=False) for turn in turns]


def load_tokenizer():
    """SmolLM2's tokenizer, from the GGUF conversion the demo and the tests share (cached once)."""
    return AutoTokenizer.from_pretrained(hf_source("smollm2"))


class LoopFactory:
    """Builds the loop the way AgentLoopWorker does: the YAML entry, hydra, the worker's arguments."""

    def __init__(self, config, tokenizer, retriever_url: str, **settings: Any):
        self.config, self.tokenizer = config, tokenizer
        self.entry = OmegaConf.load(shipped_path())[0]
        self.entry.retriever_urls = [retriever_url]
        for key, value in settings.items():
            self.entry[key] = value

    def __call__(self, generator: InstantPolicy):
        return hydra.utils.instantiate(
            config=self.entry,
            trainer_config=DictConfigWrap(config=self.config),
            server_manager=generator,
            tokenizer=self.tokenizer,
            processor=None,
            hf_model_type="qwen2",
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(self.config.data),
            tools=ToolListWrap([]),
        )


def row(question: str, protocol: str) -> dict[str, Any]:
    return {
        "raw_prompt": [
            {"role": "system", "content": "You answer questions by searching a Wikipedia corpus."},
            {"role": "user", "content": f"Question: {question}"},
        ],
        "extra_info": {"index": 0, "question": question, "protocol": protocol},
    }


def load() -> str:
    """The machine's load when a part starts: the figures mean little on an oversubscribed CPU."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Stopwatch:
    """Wall and CPU seconds spent inside wrapped coroutines (CPU: this process, all its threads)."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def wrap(self, method):
        async def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return await method(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - wall
                self.cpu += time.process_time() - cpu

        return timed


async def overhead(
    factory: LoopFactory,
    questions: list[str],
    protocol: str,
    trajectories: int,
    turns: int,
    cold: bool = False,
) -> dict[str, list[float]]:
    """Per turn: the loop's wall and CPU time (run() minus generate and search), verl's builder's
    share of the wall time; per trajectory: the instantiation verl does."""
    times: dict[str, list[float]] = {"wall": [], "cpu": [], "builder": [], "init": []}
    merge, search = AgentLoopBase.ct_merge_context_msg, retriever_client.RetrieverClient.search
    for number in range(trajectories):
        question = questions[number % len(questions)]
        generator = InstantPolicy(script(question, protocol, turns - 1, factory.tokenizer))
        if cold:  # as if every passage were new: no document ids cached
            observation._id_cache(factory.tokenizer).clear()
        builder, searching = Stopwatch(), Stopwatch()
        AgentLoopBase.ct_merge_context_msg = builder.wrap(merge)
        retriever_client.RetrieverClient.search = searching.wrap(search)
        try:
            started = time.perf_counter()
            loop = factory(generator)
            wall, cpu = time.perf_counter(), time.process_time()
            output = await loop.run(dict(SAMPLING), **row(question, protocol))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            AgentLoopBase.ct_merge_context_msg, retriever_client.RetrieverClient.search = merge, search
        assert generator.calls == turns and output.extra_fields["search_failures"] == 0, output.extra_fields
        times["wall"].append((wall - output.metrics.generate_sequences - searching.wall) / turns)
        times["cpu"].append((cpu - searching.cpu) / turns)  # the instant generator uses no CPU
        times["builder"].append(builder.wall / turns)
        times["init"].append(time.perf_counter() - started - wall)
    return times


async def concurrency(factory: LoopFactory, questions: list[str], protocol: str, count: int, searches: int):
    latencies: list[float] = []
    search = retriever_client.RetrieverClient.search

    async def timed_search(self, *args, **kwargs):  # per-call latency, retries included
        started = time.perf_counter()
        try:
            return await search(self, *args, **kwargs)
        finally:
            latencies.append(time.perf_counter() - started)

    retriever_client.RetrieverClient.search = timed_search
    try:
        scripts = [
            script(questions[n % len(questions)], protocol, searches, factory.tokenizer) for n in range(count)
        ]

        async def one(number: int):
            return await factory(InstantPolicy(scripts[number])).run(
                dict(SAMPLING), **row(questions[number % len(questions)], protocol)
            )

        started = time.perf_counter()
        outputs = await asyncio.gather(*[one(n) for n in range(count)])
        wall = time.perf_counter() - started
    finally:
        retriever_client.RetrieverClient.search = search
    failures = sum(output.extra_fields["search_failures"] for output in outputs)
    return wall, latencies, failures


async def client_only(factory: LoopFactory, questions: list[str], count: int, searches: int) -> float:
    """The same searches sent straight through the client, no loop: the floor for part 2's wall time."""
    config = AgentLoopConfig.from_kwargs(
        retriever_urls=list(factory.entry.retriever_urls), max_connections=factory.entry.max_connections
    )
    client = retriever_client.shared_client(config)

    async def one(number: int):
        for search in range(searches):
            words = questions[number % len(questions)]
            await client.search(script_queries(words, search), squeeze=False)

    started = time.perf_counter()
    await asyncio.gather(*[one(n) for n in range(count)])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--retriever-url", help="a running retriever_server (default: start the demo one)")
    parser.add_argument("--trajectories", type=int, default=250, help="overhead: trajectories, one at a time")
    parser.add_argument(
        "--turns", type=int, default=4, help="overhead: turns per trajectory (the last answers)"
    )
    parser.add_argument("--concurrency", type=int, default=512, help="concurrent trajectories")
    parser.add_argument("--searches", type=int, default=2, help="concurrency: searches per trajectory")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="the loop's max_connections: requests in flight to the server (the rest wait in the client's pool)",
    )
    parser.add_argument(
        "--parts", default="1,2", help="which benchmarks to run: 1 (overhead), 2 (concurrency)"
    )
    args = parser.parse_args()
    logging.getLogger("verl").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    server = None
    url = args.retriever_url
    if url is None:  # the demo server, its result cache off so every search is searched
        server = ServerProcess(["--demo", "--cache-size", "0"], timeout_s=600)
        url = server.url
    try:
        tokenizer = load_tokenizer()
        config = compose_trainer_config(prompt_length=4096, response_length=3000)  # ExpandSearch's lengths
        questions = sample_questions()
        # squeeze=false: the demo server has no squeezer; the observation is the documents, cut to
        # the 512-token budget at document boundaries (the heavier formatting path).
        settings = {"squeeze": False, "max_connections": args.max_connections}
        factories = {
            protocol: LoopFactory(config, tokenizer, url, protocol=protocol, **settings)
            for protocol in ("tags", "tool_call")
        }
        print(f"retriever: {url}; tokenizer: SmolLM2 ({len(tokenizer)} tokens); response_length 3000")
        if "1" in args.parts:
            overhead_table(factories, questions, args.trajectories, args.turns)
        if "2" in args.parts:
            concurrency_table(factories, questions, args.concurrency, args.searches)
    finally:
        if server is not None:
            server.stop()
    return 0


def overhead_table(
    factories: dict[str, LoopFactory], questions: list[str], trajectories: int, turns: int
) -> None:
    print(
        f"\n1. loop overhead per turn, {trajectories} trajectories x {turns} turns, one at a time ({load()})"
    )
    print("| protocol | turns | wall median | wall p90 | wall p99 | CPU median | of which verl's chat builder "
          "(wall median) | instantiate + __init__ (median, per trajectory) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for protocol, cold in (("tags", False), ("tags", True), ("tool_call", False)):
        factory = factories[protocol]
        asyncio.run(overhead(factory, questions, protocol, 50, turns))  # warm-up
        times = asyncio.run(overhead(factory, questions, protocol, trajectories, turns, cold))
        label = f"{protocol} (no cached document ids)" if cold else protocol
        wall = times["wall"]
        print(
            f"| {label} | {len(wall) * turns} | {ms(statistics.median(wall))} | {ms(percentile(wall, 90))} "
            f"| {ms(percentile(wall, 99))} | {ms(statistics.median(times['cpu']))} "
            f"| {ms(statistics.median(times['builder']))} | {ms(statistics.median(times['init']))} |"
        )


def concurrency_table(
    factories: dict[str, LoopFactory], questions: list[str], count: int, searches: int
) -> None:
    print(f"\n2. {count} concurrent trajectories, {searches} searches each, instant generator ({load()})")
    print(
        "| protocol | wall | trajectories/s | searches/s | search p50 | search p99 | failed | client alone |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for protocol in ("tags", "tool_call"):
        factory = factories[protocol]
        wall, latencies, failures = asyncio.run(concurrency(factory, questions, protocol, count, searches))
        alone = asyncio.run(client_only(factory, questions, count, searches))
        print(
            f"| {protocol} | {wall:.2f} s | {count / wall:.1f} | {len(latencies) / wall:.1f} "
            f"| {percentile(latencies, 50) * 1e3:.0f} ms | {percentile(latencies, 99) * 1e3:.0f} ms "
            f"| {failures} | {alone:.2f} s |"
        )


if __name__ == "__main__":
    sys.exit(main())
