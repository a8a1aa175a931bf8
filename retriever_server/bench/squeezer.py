"""Squeezer benchmark: context reduction, `hf` batching, `openai` client overhead.

    python -m retriever_server.bench.squeezer                        # everything (~15 min on 2 busy cores)
    python -m retriever_server.bench.squeezer --only context,openai  # the fast parts (~1 min)

Turns are the shipped sample questions (data_prep/samples) over the shipped sample corpus with the
demo's MiniLM flat index, 3 variants x topk 10 each: the question, its keyword form, and its last
four keywords (deterministic stand-ins for a policy's paraphrase, keyword and narrow variants).
Tokens are SmolLM2's (a Llama-style BPE; no Llama tokenizer is available offline).

1. context: tokens per turn of the raw concatenation of 3 x 10 passages (what ferret sends), after
   de-duplication, after the context budget, and after squeezing (extractive; hf on its subset).
2. hf: SmolLM2-135M-Instruct on this machine, N concurrent /squeeze requests with the turns'
   fused passages: served throughput against the in-process batched `generate` ceiling measured
   in the same run, and one request at a time for contrast.
3. openai: per-request latency of the `openai` backend (the official `openai` client) against a
   local OpenAI-compatible server that answers at once (the scripted test server in its own
   process), sequential and 64 in flight, side by side with the hand-written httpx client it
   replaced (`HandWrittenChat`, its success path), interleaved in one run.
"""

from __future__ import annotations

import os

# as in `python -m retriever_server` (see __main__.py): torch's and faiss's OpenMP runtimes must not
# spin against each other, or the in-process ceiling runs slower than the server it is compared with
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from retriever_server.squeezer.context import format_passages, select_passages, unique_passages

SAMPLES = Path(__file__).resolve().parents[2] / "data_prep" / "samples"
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "with",
        "from",
        "and",
        "or",
        "is",
        "was",
        "were",
        "are",
        "be",
        "been",
        "did",
        "do",
        "does",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "that",
        "this",
        "these",
        "those",
        "as",
        "it",
        "its",
        "into",
        "than",
        "then",
        "there",
        "their",
    }
)
TOPK = 10


def variants(question: str) -> list[str]:
    words = [w for w in re.findall(r"[\w'-]+", question) if w.lower() not in STOPWORDS]
    return [question, " ".join(words) or question, " ".join(words[-4:]) or question]


def sample_turns(n: int) -> list[tuple[str, list[str]]]:
    rows = [
        json.loads(line)
        for path in sorted(SAMPLES.glob("*/*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    step = max(1, len(rows) // n)  # spread over the seven datasets
    return [(row["question"], variants(row["question"])) for row in rows[::step][:n]]


def retrieve(turns, topk: int = TOPK):
    """(encoder, [(queries, question, raw passages, fused passages)]) over the demo index."""
    from retriever_server.demo import prepare_demo
    from retriever_server.index.corpus import CorpusStore
    from retriever_server.index.dense import DenseRetriever
    from retriever_server.index.encoder import Encoder, EncoderConfig
    from retriever_server.index.hits import SearchResults
    from retriever_server.search.fusion import fuse
    from retriever_server.settings import Settings

    settings = prepare_demo(Settings(demo=True))
    corpus = CorpusStore.open(settings.corpus, settings.cache_dir)
    config = EncoderConfig(
        model=settings.encoder, pooling=settings.pooling, query_prefix="", passage_prefix=""
    )
    encoder = Encoder(config, device="cpu", batch_size=64)
    retriever = DenseRetriever.load(Path(settings.dense_index), encoder, len(corpus), corpus.fingerprint)
    out = []
    for question, queries in turns:
        results = retriever.search(queries, topk)
        raw = [corpus.passage(p) for row in results.positions.tolist() for p in row if p >= 0]
        fused = [
            corpus.passage(hit.position) for hit in fuse(SearchResults(results.positions, results.scores))
        ]
        out.append((queries, question, raw, fused))
    return encoder, out


def _mean(values) -> float:
    return statistics.fmean(values) if values else float("nan")


def bench_context(encoder, turns, count, context_tokens: int) -> dict:
    from retriever_server.squeezer.extractive import ExtractiveSqueezer

    engine = ThreadPoolExecutor(max_workers=1)
    extractive = ExtractiveSqueezer(encoder, engine, max_tokens=512, context_tokens=context_tokens)
    rows = {
        "raw": [],
        "unique": [],
        "budget": [],
        "extractive": [],
        "passages_raw": [],
        "passages_unique": [],
    }
    started = time.perf_counter()
    for queries, question, raw, fused in turns:
        rows["passages_raw"].append(len(raw))
        rows["passages_unique"].append(len(unique_passages(fused)))
        rows["raw"].append(count([format_passages(raw)])[0])
        rows["unique"].append(count([format_passages(unique_passages(fused))])[0])
        rows["budget"].append(count([format_passages(select_passages(fused, context_tokens, count))])[0])
        rows["extractive"].append(count([asyncio.run(extractive.squeeze(queries, fused, question))])[0])
    engine.shutdown()
    extractive_ms = (time.perf_counter() - started) / len(turns) * 1e3
    return {key: _mean(values) for key, values in rows.items()} | {"extractive_ms": extractive_ms}


async def _post_all(url: str, bodies: list[dict]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(*(client.post("/squeeze", json=body) for body in bodies))
        elapsed = time.perf_counter() - started
    bad = [r.text for r in responses if r.status_code != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} /squeeze requests failed: {bad[0][:300]}")
    return elapsed


def bench_hf(turns, n: int, context_tokens: int, max_new_tokens: int) -> dict:
    from retriever_server.models import hf_source, load_causal_lm
    from retriever_server.process import ServerProcess
    from retriever_server.squeezer.hf import HFChat
    from retriever_server.squeezer.prompt import PromptTemplate

    directory = hf_source("smollm2")
    model, tokenizer = load_causal_lm(directory, device="cpu")
    chat = HFChat(model, tokenizer, name="smollm2", max_new_tokens=max_new_tokens, batch_size=n)
    template = PromptTemplate.load()
    turns = turns[:n]
    prompts = [
        chat.prompt_text(
            template.render(q, question, select_passages(fused, context_tokens, chat.count_tokens))
        )
        for q, question, _, fused in turns
    ]
    prompt_tokens = chat.count_tokens(prompts)
    chat.generate(prompts[:1])  # warm up
    summaries: list[str] = []
    ceiling = {n: _generate_rps(chat, prompts, n, summaries)}
    if n > 1:
        ceiling[n // 2] = _generate_rps(chat, prompts, n // 2)
    best = max(ceiling, key=ceiling.get)  # the server gets the best batch size, as one would tune it
    bodies = [
        {"queries": q, "question": question, "documents": [{"title": p.title, "text": p.text} for p in fused]}
        for q, question, _, fused in turns
    ]
    serve = [
        "--demo",
        "--squeezer",
        "hf",
        "--squeezer-model",
        directory,
        "--squeezer-max-tokens",
        str(max_new_tokens),
        "--squeezer-context-tokens",
        str(context_tokens),
        "--squeezer-batch-size",
        str(best),
        "--squeezer-cache-size",
        "0",
        "--squeeze-timeout-s",
        "3600",
    ]
    with ServerProcess(serve, timeout_s=900) as server:
        asyncio.run(_post_all(server.url, bodies[:1]))  # warm up
        served_s = asyncio.run(_post_all(server.url, bodies))
        metrics = httpx.get(server.url + "/metrics").text
    batches = _sample(metrics, "retriever_squeezer_batch_requests_count") - 1
    print(f"hf served: {n / served_s:.4f} req/s in {batches:.0f} batch(es)", file=sys.stderr, flush=True)
    single = _generate_rps(chat, prompts, 1)
    return {
        "n": n,
        "prompt_tokens": _mean(prompt_tokens),
        "summary_tokens": _mean(chat.count_tokens(summaries)),
        "ceiling": ceiling,
        "ceiling_rps": ceiling[best],
        "best_batch": best,
        "served_rps": n / served_s,
        "single_rps": single,
        "served_batches": batches,
    }


def _generate_rps(chat, prompts: list[str], batch: int, summaries: list | None = None) -> float:
    """Requests/s of in-process `generate` over `prompts` in batches of `batch` (no HTTP, no queue)."""
    started = time.perf_counter()
    for start in range(0, len(prompts), batch):
        (summaries if summaries is not None else []).extend(chat.generate(prompts[start : start + batch]))
    rps = len(prompts) / (time.perf_counter() - started)
    print(
        f"hf in-process, batch {batch}: {rps:.4f} req/s", file=sys.stderr, flush=True
    )  # progress: the run is long
    return rps


def _sample(metrics: str, name: str) -> float:
    return float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith(name)))


class HandWrittenChat:
    """The `openai` backend before the official client, on its success path: one pooled
    `httpx.AsyncClient`, a semaphore, `json` both ways (its retries cost nothing until a failure)."""

    def __init__(self, url: str, model: str, max_tokens: int = 512, concurrency: int = 64):
        self.url, self.model, self.max_tokens = url.rstrip("/"), model, max_tokens
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.AsyncClient(
            headers={"Content-Type": "application/json"}, limits=limits, timeout=httpx.Timeout(20.0)
        )
        self.slots = asyncio.Semaphore(concurrency)

    async def complete(self, messages: list[dict]) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0.0}
        async with self.slots:
            response = await self.client.post(
                f"{self.url}/chat/completions", content=json.dumps(body).encode()
            )
        return json.loads(response.content)["choices"][0]["message"]["content"]

    async def aclose(self) -> None:
        await self.client.aclose()


async def _openai_latencies(url: str, messages: list[dict], sequential: int, concurrent: int) -> dict:
    """Per-request latency of both clients against the same server, interleaved in rounds of 50 so
    that the machine's drift hits both alike; then requests/s with 64 in flight."""
    from retriever_server.squeezer.openai import OpenAIChat

    clients = {
        "official": OpenAIChat(url, "scripted-squeezer", max_tokens=512, concurrency=64),
        "hand-written": HandWrittenChat(url, "scripted-squeezer", max_tokens=512, concurrency=64),
    }
    latencies: dict[str, list[float]] = {name: [] for name in clients}
    for chat in clients.values():
        for _ in range(50):  # warm up: connections, code paths
            await chat.complete(messages)
    for _ in range(max(1, sequential // 50)):
        for name, chat in clients.items():
            for _ in range(50):
                started = time.perf_counter()
                await chat.complete(messages)
                latencies[name].append((time.perf_counter() - started) * 1e3)
    result = {}
    for name, chat in clients.items():
        started = time.perf_counter()
        await asyncio.gather(*(chat.complete(messages) for _ in range(concurrent)))
        throughput = concurrent / (time.perf_counter() - started)
        await chat.aclose()
        values = sorted(latencies[name])
        result[name] = {
            "p50_ms": values[len(values) // 2],
            "p95_ms": values[int(len(values) * 0.95)],
            "p99_ms": values[int(len(values) * 0.99)],
            "rps_64": throughput,
            "n": len(values),
        }
    return result


def bench_openai(turn, context_tokens: int, sequential: int) -> dict:
    from retriever_server.process import free_port
    from retriever_server.squeezer.prompt import PromptTemplate

    queries, question, _, fused = turn
    messages = PromptTemplate.load().render(queries, question, select_passages(fused, context_tokens))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "retriever_server.scripted.chat_server", "--port", str(port)]
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/models").raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        result = asyncio.run(_openai_latencies(url, messages, sequential, 64 * 20))
    finally:
        server.terminate()
        server.wait(30)
    return {"clients": result, "prompt_bytes": sum(len(m["content"].encode()) for m in messages)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="context,hf,openai", help="comma-separated parts to run")
    parser.add_argument("--turns", type=int, default=64, help="sample turns for the context table")
    parser.add_argument("--context-tokens", type=int, default=4096, help="squeezer context budget (tokens)")
    parser.add_argument("--hf-requests", type=int, default=16, help="concurrent /squeeze requests")
    parser.add_argument("--hf-context-tokens", type=int, default=1024, help="context budget of the hf run")
    parser.add_argument("--hf-max-new-tokens", type=int, default=64, help="summary cap of the hf run")
    parser.add_argument("--openai-requests", type=int, default=1000, help="sequential requests timed")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    from transformers import AutoTokenizer

    from retriever_server.models import hf_source
    from retriever_server.squeezer.context import tokenizer_counter

    count = tokenizer_counter(AutoTokenizer.from_pretrained(hf_source("smollm2")))
    encoder, turns = retrieve(sample_turns(max(args.turns, args.hf_requests)))
    if "context" in parts:
        c = bench_context(encoder, turns[: args.turns], count, args.context_tokens)
        print(
            f"\n{args.turns} turns, 3 variants x topk {TOPK}: {c['passages_raw']:.1f} passages, "
            f"{c['passages_unique']:.1f} unique; extractive {c['extractive_ms']:.0f} ms per turn\n"
        )
        print(f"| raw concatenation | de-duplicated | budget {args.context_tokens} | extractive (512) |")
        print("|---|---|---|---|")
        print(
            f"| {c['raw']:.0f} | {c['unique']:.0f} ({c['unique'] / c['raw']:.2f}x) | {c['budget']:.0f} | "
            f"{c['extractive']:.0f} ({c['extractive'] / c['raw']:.2f}x) |"
        )
    if "openai" in parts:
        o = bench_openai(turns[0], args.context_tokens, args.openai_requests)
        print(
            f"\nopenai backend vs an instant local server ({o['prompt_bytes']} prompt bytes), side by side:\n"
        )
        print("| client | requests | p50 ms | p95 ms | p99 ms | requests/s at 64 in flight |")
        print("|---|---|---|---|---|---|")
        for name, c in o["clients"].items():
            print(
                f"| {name} | {c['n']} | {c['p50_ms']:.2f} | {c['p95_ms']:.2f} | {c['p99_ms']:.2f} | {c['rps_64']:.0f} |"
            )
    if "hf" in parts:
        h = bench_hf(turns, args.hf_requests, args.hf_context_tokens, args.hf_max_new_tokens)
        print(
            f"\nhf SmolLM2-135M on CPU: {h['n']} requests, {h['prompt_tokens']:.0f} prompt tokens, "
            f"{h['summary_tokens']:.0f} summary tokens on average; served with --squeezer-batch-size "
            f"{h['best_batch']} in {h['served_batches']:.0f} batches\n"
        )
        sizes = sorted(h["ceiling"], reverse=True)
        print(
            "| "
            + " | ".join(f"in-process batch {b}" for b in sizes)
            + " | served, concurrent | served / ceiling "
            "(best batch) | one at a time |"
        )
        print("|---" * (len(sizes) + 3) + "|")
        print(
            "| "
            + " | ".join(f"{h['ceiling'][b]:.4f} req/s" for b in sizes)
            + f" | {h['served_rps']:.4f} req/s | "
            f"{h['served_rps'] / h['ceiling_rps']:.2f} | {h['single_rps']:.4f} req/s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
