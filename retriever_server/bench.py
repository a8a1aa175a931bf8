"""`bench`: throughput and latency of /search under N concurrent clients, against the in-process ceiling.

Over a synthetic corpus of `--passages` passages (default 100k) whose dense index holds random unit
vectors of the encoder's dimension: encoding 100k passages takes over an hour on 2 CPU cores, and a
flat search costs the same whatever the vectors are. Queries are really encoded (MiniLM by default).
Each client sends `/search` with 3 variants and topk 10, as an ExpandSearch turn does.

    python -m retriever_server bench                    # the README table (about 6 minutes on 2 cores)
    python -m retriever_server bench --url http://host:8000 --concurrency 64

Prints, as markdown: the ceiling (batched encode + search, no HTTP, best batch size); served
queries/s, requests/s, p50/p95/p99 latency and cache hit rate per concurrency with batching off and
on (cache off; the server's --max-batch-queries is the ceiling's best batch size, as one would
tune it); a GRPO-like workload (each request sent by 5 rollouts) with the cache off and on;
and HNSW against the flat index (recall@10 and search throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import time
from pathlib import Path

import httpx
import numpy as np

from retriever_server.synthetic import query_variants

TOPK = 10
ROLLOUTS = 5  # GRPO group size: every request is sent by this many rollouts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="benchmark a running server instead of starting one (skips the ceiling)")
    parser.add_argument("--passages", type=int, default=100_000, help="synthetic corpus size")
    parser.add_argument("--concurrency", default="1,16,64,256", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--workdir", default=None, help="corpus and index cache (default: <cache dir>/bench)")
    parser.add_argument("--grpo-requests", type=int, default=240, help="distinct requests of the GRPO workload")
    parser.add_argument("--hnsw", default="HNSW32", help="faiss factory compared with Flat ('' skips it)")
    parser.add_argument("--max-batch-queries", type=int, default=None,
                        help="server batch cap (default: the ceiling's best batch size)")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument("--corpus-load", type=int, default=0, metavar="N",
                        help="only time the corpus store: first conversion and warm load of N synthetic passages")


def prepare(workdir: Path, n_passages: int) -> tuple[Path, Path, dict]:
    """Synthetic corpus (converted) and a flat index of random unit vectors, cached in `workdir`."""
    import faiss

    from retriever_server.corpus import CorpusStore
    from retriever_server.demo import demo_encoder_config
    from retriever_server.index_params import PARAMS_FILE, write_params
    from retriever_server.synthetic import write_synthetic_corpus

    config = demo_encoder_config()
    dim = json.loads((Path(config.model) / "config.json").read_text())["hidden_size"]
    root = workdir / f"synthetic-{n_passages}"
    corpus_file = root / "corpus.jsonl"
    if not corpus_file.is_file():
        write_synthetic_corpus(corpus_file, n_passages)
    corpus = CorpusStore.open(corpus_file, root / "cache")
    index_dir = root / "random-flat"
    if not (index_dir / PARAMS_FILE).is_file():
        index_dir.mkdir(parents=True, exist_ok=True)
        vectors = np.random.default_rng(0).standard_normal((n_passages, dim), dtype=np.float32)
        faiss.normalize_L2(vectors)
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        faiss.write_index(index, str(index_dir / "index.faiss"))
        write_params(index_dir, {"kind": "dense", "factory": "Flat", "dim": dim, "metric": "inner_product",
                                 "corpus_size": len(corpus), "corpus_fingerprint": corpus.fingerprint,
                                 "encoder": config.identity(), "vectors": "random unit vectors (benchmark)"})
    return corpus.directory, index_dir, config.identity()


def serve_args(corpus: Path, index: Path, encoder: dict, cache_size: int, batching: bool,
               max_batch_queries: int) -> list[str]:
    return ["--corpus", str(corpus), "--dense-index", str(index), "--encoder", encoder["model"],
            "--query-prefix", "", "--passage-prefix", "", "--cache-size", str(cache_size),
            "--batching" if batching else "--no-batching", "--max-batch-queries", str(max_batch_queries)]


def measure_ceiling(corpus: Path, index: Path, n_passages: int) -> dict:
    """Batched encode + search in this process, no HTTP: queries/s at each batch size."""
    from retriever_server.corpus import CorpusStore
    from retriever_server.demo import demo_encoder_config
    from retriever_server.dense import DenseRetriever
    from retriever_server.encoder import Encoder
    from retriever_server.loading import set_threads
    from retriever_server.settings import Settings

    set_threads(Settings())
    store = CorpusStore(corpus)
    encoder = Encoder(demo_encoder_config(), device="cpu", batch_size=1024)
    retriever = DenseRetriever.load(index, encoder, len(store), store.fingerprint)
    rng = random.Random(1)
    by_batch = {}
    for batch in (16, 64, 256, 1024):
        queries = [q for _ in range(batch // 3 + 1) for q in query_variants(rng.randrange(n_passages))][:batch]
        retriever.search(queries, TOPK)  # warm-up
        started, done = time.perf_counter(), 0
        while time.perf_counter() - started < 3:
            retriever.search(queries, TOPK)
            done += batch
        by_batch[batch] = done / (time.perf_counter() - started)
    best = max(by_batch, key=by_batch.get)
    return {"queries_per_s": by_batch[best], "best_batch": best, "by_batch": by_batch}


async def _metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def drive(url: str, bodies: list[dict], concurrency: int, duration: float | None) -> dict:
    """`concurrency` clients send `bodies` in order (cycling when `duration` is set); returns the figures."""
    latencies: list[float] = []
    cursor = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        hits0, misses0 = await _metric(client, "retriever_cache_hits_total"), await _metric(client, "retriever_cache_misses_total")
        stop_at = None if duration is None else time.perf_counter() + duration

        async def worker():
            nonlocal cursor
            while True:
                if (stop_at is None and cursor >= len(bodies)) or (stop_at is not None and time.perf_counter() >= stop_at):
                    return
                body = bodies[cursor % len(bodies)]
                cursor += 1
                sent = time.perf_counter()
                response = await client.post("/search", json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - sent)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        hits = await _metric(client, "retriever_cache_hits_total") - hits0
        misses = await _metric(client, "retriever_cache_misses_total") - misses0
    p50, p95, p99 = np.percentile(np.array(latencies) * 1e3, [50, 95, 99])
    n_queries = sum(len(bodies[i % len(bodies)]["queries"]) for i in range(len(latencies)))
    return {"concurrency": concurrency, "requests": len(latencies), "requests_per_s": len(latencies) / elapsed,
            "queries_per_s": n_queries / elapsed, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "cache_hit_rate": hits / max(1.0, hits + misses)}


def distinct_bodies(n_passages: int, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"queries": query_variants(rng.randrange(n_passages)), "topk": TOPK} for _ in range(count)]


def grpo_bodies(n_passages: int, n_distinct: int, seed: int) -> list[dict]:
    """Each request sent by ROLLOUTS rollouts, shuffled so the copies arrive at different times."""
    bodies = distinct_bodies(n_passages, n_distinct, seed) * ROLLOUTS
    random.Random(seed).shuffle(bodies)
    return bodies


def hnsw_comparison(factory: str, index_dir: Path, dim: int) -> dict:
    """Recall@10 of `factory` against Flat, and search throughput of both (batch 64, in process)."""
    import faiss

    from retriever_server.dense import BLAS_THRESHOLD

    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    flat = faiss.read_index(str(index_dir / "index.faiss"))
    vectors = flat.reconstruct_n(0, flat.ntotal)
    out = {"factory": factory, "passages": int(flat.ntotal)}
    started = time.perf_counter()
    ann = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ann.add(vectors)
    out["build_s"] = time.perf_counter() - started
    queries = vectors[np.random.default_rng(2).choice(len(vectors), 512, replace=False)]
    noise = np.random.default_rng(3).standard_normal(queries.shape, dtype=np.float32) / np.float32(np.sqrt(dim))
    queries = np.ascontiguousarray(queries + np.float32(0.5) * noise, dtype=np.float32)
    faiss.normalize_L2(queries)
    truth = flat.search(queries, TOPK)[1]
    out["flat_queries_per_s"] = _throughput(flat, queries)
    out["ef_search"] = {}
    for ef in (16, 64, 128):
        faiss.ParameterSpace().set_index_parameter(ann, "efSearch", ef)
        found = ann.search(queries, TOPK)[1]
        recall = np.mean([len(set(a) & set(b)) / TOPK for a, b in zip(found, truth, strict=True)])
        out["ef_search"][ef] = {"recall_at_10": float(recall), "queries_per_s": _throughput(ann, queries)}
    return out


def _throughput(index, queries: np.ndarray, batch: int = 64) -> float:
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < 2:
        for start in range(0, len(queries), batch):
            index.search(queries[start : start + batch], TOPK)
        done += len(queries)
    return done / (time.perf_counter() - started)


def sample_recall(factory: str) -> dict | None:
    """Recall@10 of `factory` against Flat on the shipped sample corpus, queried with the sample questions."""
    import faiss

    from retriever_server.corpus import CorpusStore
    from retriever_server.demo import SAMPLE_CORPUS, demo_encoder_config
    from retriever_server.encoder import Encoder
    from retriever_server.settings import default_cache_dir

    questions = [json.loads(line)["question"] for path in sorted((SAMPLE_CORPUS.parents[2] / "data_prep" / "samples")
                 .glob("*/*.jsonl")) for line in path.read_text().splitlines() if line.strip()]
    if not SAMPLE_CORPUS.is_file() or not questions:
        return None
    corpus = CorpusStore.open(SAMPLE_CORPUS, default_cache_dir())
    encoder = Encoder(demo_encoder_config(), device="cpu", batch_size=64)
    vectors = encoder.encode(list(corpus.iter_contents()), is_query=False)
    queries = encoder.encode(questions, is_query=True)
    flat = faiss.IndexFlatIP(encoder.dim)
    flat.add(vectors)
    ann = faiss.index_factory(encoder.dim, factory, faiss.METRIC_INNER_PRODUCT)
    ann.add(vectors)
    truth = flat.search(queries, TOPK)[1]
    out = {"passages": len(corpus), "questions": len(questions), "ef_search": {}}
    for ef in (16, 64, 128):
        faiss.ParameterSpace().set_index_parameter(ann, "efSearch", ef)
        found = ann.search(queries, TOPK)[1]
        out["ef_search"][ef] = float(np.mean([len(set(a) & set(b)) / TOPK for a, b in zip(found, truth, strict=True)]))
    return out


def corpus_load(workdir: Path, n_passages: int) -> dict:
    """First conversion (JSONL -> memory-mapped store) and warm open of N passages, plus 1000 random reads."""
    from retriever_server.corpus import CorpusStore
    from retriever_server.synthetic import write_synthetic_corpus

    source = workdir / f"corpus-load-{n_passages}.jsonl"
    if not source.is_file():
        write_synthetic_corpus(source, n_passages)
    cache = workdir / "corpus-load-cache"
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    CorpusStore.open(source, cache)
    converted = time.perf_counter()
    store = CorpusStore.open(source, cache)
    opened = time.perf_counter()
    rng = random.Random(0)
    reads = [store.passage(rng.randrange(len(store))) for _ in range(1000)]
    read = time.perf_counter()
    assert len(reads) == 1000 and len(store) == n_passages
    return {"passages": n_passages, "jsonl_mb": source.stat().st_size / 2**20, "convert_s": converted - started,
            "warm_load_s": opened - converted, "read_1000_ms": (read - opened) * 1e3}


def _row(label: str, r: dict) -> str:
    return (f"| {label} | {r['concurrency']} | {r['queries_per_s']:.0f} | {r['requests_per_s']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['cache_hit_rate']:.2f} |")


def run(args: argparse.Namespace) -> int:
    from retriever_server.process import ServerProcess
    from retriever_server.settings import default_cache_dir

    workdir = Path(args.workdir or Path(default_cache_dir()) / "bench")
    if args.corpus_load:
        r = corpus_load(workdir, args.corpus_load)
        print("| passages | JSONL | first conversion | warm load | 1000 random passages |\n|---|---|---|---|---|")
        print(f"| {r['passages']:,} | {r['jsonl_mb']:.0f} MB | {r['convert_s']:.1f} s | {r['warm_load_s'] * 1e3:.1f} ms "
              f"| {r['read_1000_ms']:.1f} ms |")
        return 0
    levels = [int(c) for c in args.concurrency.split(",")]
    report: dict = {"passages": args.passages, "vectors": "random unit vectors (flat search cost is data-independent)"}
    corpus, index, encoder = prepare(workdir, args.passages)
    max_batch = args.max_batch_queries
    if args.url is None:
        report["ceiling"] = measure_ceiling(corpus, index, args.passages)
        print(f"ceiling (in process, no HTTP): {report['ceiling']['queries_per_s']:.0f} queries/s at batch "
              f"{report['ceiling']['best_batch']}; by batch: "
              + ", ".join(f"{b}: {q:.0f}" for b, q in report["ceiling"]["by_batch"].items()), flush=True)
        max_batch = max_batch or report["ceiling"]["best_batch"]  # serve at the batch size the engine likes best
    report["max_batch_queries"] = max_batch = max_batch or 256
    bodies = distinct_bodies(args.passages, 20_000, seed=4)
    lines = ["| batching | clients | queries/s | requests/s | p50 ms | p95 ms | p99 ms | cache hit rate |",
             "|---|---|---|---|---|---|---|---|"]
    report["served"] = {}
    for batching in (False, True):
        label = "on" if batching else "off"
        server = None if args.url else ServerProcess(serve_args(corpus, index, encoder, 0, batching, max_batch))
        try:
            url = args.url or server.url
            asyncio.run(drive(url, bodies[:200], 16, None))  # warm-up
            for level in levels:
                result = asyncio.run(drive(url, bodies, level, args.duration))
                report["served"].setdefault(label, []).append(result)
                lines.append(_row(label, result))
                print(lines[-1], flush=True)
        finally:
            if server is not None:
                server.stop()
        if args.url:
            break
    grpo = grpo_bodies(args.passages, args.grpo_requests, seed=5)
    report["grpo"] = {}
    for cache_size in (0, 65536):
        label = "on" if cache_size else "off"
        server = None if args.url else ServerProcess(serve_args(corpus, index, encoder, cache_size, True, max_batch))
        try:
            report["grpo"][label] = asyncio.run(drive(args.url or server.url, grpo, 64, None))
        finally:
            if server is not None:
                server.stop()
    grpo_gain = report["grpo"]["on"]["requests_per_s"] / report["grpo"]["off"]["requests_per_s"]
    print("\n" + "\n".join(lines))
    print("\nGRPO-like workload (each request sent by 5 rollouts, 64 clients, batching on):")
    print("| cache | requests/s | p50 ms | p99 ms | cache hit rate |\n|---|---|---|---|---|")
    for label, r in report["grpo"].items():
        print(f"| {label} | {r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['cache_hit_rate']:.2f} |")
    print(f"cache gain: {grpo_gain:.2f}x requests/s")
    if "ceiling" in report:
        at64 = next((r for r in report["served"]["on"] if r["concurrency"] == 64), None)
        if at64:
            print(f"served/ceiling at 64 clients: {at64['queries_per_s'] / report['ceiling']['queries_per_s']:.2f}; "
                  f"p99/p50 at 64 clients: {at64['p99_ms'] / at64['p50_ms']:.2f}")
    if args.hnsw:
        report["hnsw"] = hnsw_comparison(args.hnsw, index, int(json.loads((index / "params.json").read_text())["dim"]))
        report["hnsw_sample"] = sample_recall(args.hnsw)
        h = report["hnsw"]
        print(f"\n{args.hnsw} vs Flat over {h['passages']} random unit vectors (queries: noisy copies of stored "
              f"vectors; batch 64, in process; build {h['build_s']:.0f} s); Flat: {h['flat_queries_per_s']:.0f} queries/s")
        print("| efSearch | recall@10 (random) | recall@10 (sample corpus, MiniLM) | queries/s | speed-up vs Flat |")
        print("|---|---|---|---|---|")
        for ef, r in h["ef_search"].items():
            sample = report["hnsw_sample"]["ef_search"][ef] if report["hnsw_sample"] else float("nan")
            print(f"| {ef} | {r['recall_at_10']:.3f} | {sample:.3f} | {r['queries_per_s']:.0f} | "
                  f"{r['queries_per_s'] / h['flat_queries_per_s']:.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0
