"""`bench`: throughput and latency of /search under N concurrent clients, against the in-process ceiling.

Over a synthetic corpus of `--passages` passages (default 100k) whose dense index holds random unit
vectors of the encoder's dimension: encoding 100k passages takes over an hour on 2 CPU cores, and a
flat search costs the same whatever the vectors are. Queries are really encoded (MiniLM by default).
Each client sends `/search` with 3 variants and topk 10, as an ExpandSearch turn does.

    python -m retriever_server.bench        # every table of docs/benchmarks.md (about 20 minutes on 2 cores)
    python -m retriever_server.bench --side-by-side-rounds 0            # skip the first table
    python -m retriever_server bench --url http://host:8000 --concurrency 64

First, the plain Search-R1-shaped server (`baseline`) against ours at 1, 16 and 64 clients
(`side_by_side`), so a regression at any concurrency shows. Then batching off against on. Built to
be read on a noisy, shared machine: the batching-off and batching-on servers run side by
side and each concurrency level measures off, then on, back to back; the ceiling (batched encode +
search in this process, no HTTP, at its best batch size) is measured again between levels, and every
served row is compared with the mean of the ceilings measured just before and just after it. Each
row also says where the CPU went, in ms per request: the load generator, the server's event loop
(HTTP, validation, fusion, passages, JSON, metrics) and the engine (tokenizer, encoder, faiss), so a
missed target can be explained with numbers. Then a GRPO-like workload (each request sent by 5
rollouts) with the cache off and on, alternated, and HNSW against Flat (`ann_recall`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np

from retriever_server.bench.loadgen import drive
from retriever_server.bench.report import SERVED_HEADER, print_ann, print_summary, reference_level, served_row
from retriever_server.bench.synthetic import query_variants

TOPK = 10
ROLLOUTS = 5  # GRPO group size: every request is sent by this many rollouts
CEILING_BATCHES = (16, 64, 256, 1024)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="benchmark a running server instead of starting one (skips the ceiling)"
    )
    parser.add_argument("--passages", type=int, default=100_000, help="synthetic corpus size")
    parser.add_argument("--concurrency", default="1,16,64,256", help="comma-separated client counts")
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of steady state measured per row (after every client has had one answer)",
    )
    parser.add_argument("--workdir", default=None, help="corpus and index cache (default: <cache dir>/bench)")
    parser.add_argument(
        "--grpo-requests", type=int, default=240, help="distinct requests of the GRPO workload"
    )
    parser.add_argument("--grpo-repeats", type=int, default=3, help="cache off/on pairs of the GRPO workload")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="times the 64-client level is measured (off, on, ceiling), for a median ratio",
    )
    parser.add_argument(
        "--side-by-side-rounds",
        type=int,
        default=3,
        help="rounds of the first table: the plain Search-R1-shaped server against ours at 1, 16 and 64 "
        "clients (0 skips it)",
    )
    parser.add_argument(
        "--side-by-side-only",
        action="store_true",
        help="print the first table and stop (what a regression check needs)",
    )
    parser.add_argument("--hnsw", default="HNSW32", help="faiss factory compared with Flat ('' skips it)")
    parser.add_argument(
        "--ann-passages",
        type=int,
        default=20_000,
        help="synthetic passages encoded by MiniLM for HNSW recall on real embeddings "
        "(once, cached in the workdir; 0 skips that set)",
    )
    parser.add_argument(
        "--max-batch-queries",
        type=int,
        default=None,
        help="server batch cap (default: the server's, 256; above 64 queries the engine's CPU per "
        "query is flat here, and smaller batches pipeline better)",
    )
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument(
        "--corpus-load",
        type=int,
        default=0,
        metavar="N",
        help="only time the corpus store: first conversion and warm load of N synthetic passages",
    )


def prepare(workdir: Path, n_passages: int) -> tuple[Path, Path, dict]:
    """Synthetic corpus (converted) and a flat index of random unit vectors, cached in `workdir`."""
    import faiss

    from retriever_server.bench.synthetic import synthetic_store
    from retriever_server.demo import demo_encoder_config
    from retriever_server.index.params import PARAMS_FILE, write_params

    config = demo_encoder_config()
    dim = json.loads((Path(config.model) / "config.json").read_text())["hidden_size"]
    corpus = synthetic_store(workdir, n_passages)
    index_dir = workdir / f"synthetic-{n_passages}" / "random-flat"
    if not (index_dir / PARAMS_FILE).is_file():
        index_dir.mkdir(parents=True, exist_ok=True)
        vectors = np.random.default_rng(0).standard_normal((n_passages, dim), dtype=np.float32)
        faiss.normalize_L2(vectors)
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        faiss.write_index(index, str(index_dir / "index.faiss"))
        write_params(
            index_dir,
            {
                "kind": "dense",
                "factory": "Flat",
                "dim": dim,
                "metric": "inner_product",
                "corpus_size": len(corpus),
                "corpus_fingerprint": corpus.fingerprint,
                "encoder": config.identity(),
                "vectors": "random unit vectors (benchmark)",
            },
        )
    return corpus.directory, index_dir, config.identity()


def serve_args(
    corpus: Path, index: Path, encoder: dict, cache_size: int, batching: bool, max_batch_queries: int
) -> list[str]:
    return [
        "--corpus",
        str(corpus),
        "--dense-index",
        str(index),
        "--encoder",
        encoder["model"],
        "--query-prefix",
        "",
        "--passage-prefix",
        "",
        "--cache-size",
        str(cache_size),
        "--batching" if batching else "--no-batching",
        "--max-batch-queries",
        str(max_batch_queries),
    ]


class Ceiling:
    """The engine in this process (same settings as the server's): batched encode + search, no HTTP."""

    def __init__(self, corpus: Path, index: Path, n_passages: int):
        from retriever_server.demo import demo_encoder_config
        from retriever_server.index.corpus import CorpusStore
        from retriever_server.index.dense import DenseRetriever
        from retriever_server.index.encoder import Encoder
        from retriever_server.search.loading import set_threads
        from retriever_server.settings import Settings

        set_threads(Settings())
        store = CorpusStore(corpus)
        self.encoder = Encoder(demo_encoder_config(), device="cpu", batch_size=max(CEILING_BATCHES))
        self.retriever = DenseRetriever.load(index, self.encoder, len(store), store.fingerprint)
        rng = random.Random(1)
        self.queries = [
            q for _ in range(max(CEILING_BATCHES) // 3 + 1) for q in query_variants(rng.randrange(n_passages))
        ]

    def measure(self, batch: int, seconds: float = 5.0) -> dict[str, float]:
        """Queries/s at `batch`, and the CPU (all threads of this process) it took per query."""
        queries = self.queries[:batch]
        self.retriever.search(queries, TOPK)  # warm-up
        started, cpu, done = time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - started < seconds:
            self.retriever.search(queries, TOPK)
            done += batch
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {
            "queries_per_s": done / elapsed,
            "cpu_ms_per_query": cpu * 1e3 / done,
            "cores_busy": cpu / elapsed,
        }


def distinct_bodies(n_passages: int, count: int, seed: int) -> list[dict]:
    """`count` requests about distinct towns, in random order; past `n_passages` the towns come round again."""
    rng = random.Random(seed)
    towns = [
        town for _ in range(-(-count // n_passages)) for town in rng.sample(range(n_passages), n_passages)
    ]
    return [{"queries": query_variants(town), "topk": TOPK} for town in towns[:count]]


def grpo_bodies(n_passages: int, n_distinct: int, seed: int) -> list[dict]:
    """Each request sent by ROLLOUTS rollouts, shuffled so the copies arrive at different times."""
    bodies = distinct_bodies(n_passages, n_distinct, seed) * ROLLOUTS
    random.Random(seed).shuffle(bodies)
    return bodies


def corpus_load(workdir: Path, n_passages: int) -> dict:
    """First conversion (JSONL -> memory-mapped store) and warm open of N passages, plus 1000 random reads."""
    from retriever_server.bench.synthetic import write_synthetic_corpus
    from retriever_server.index.corpus import CorpusStore

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
    return {
        "passages": n_passages,
        "jsonl_mb": source.stat().st_size / 2**20,
        "convert_s": converted - started,
        "warm_load_s": opened - converted,
        "read_1000_ms": (read - opened) * 1e3,
    }


def served(
    args, corpus: Path, index: Path, encoder: dict, ceiling: Ceiling | None, best: int | None, max_batch: int
) -> dict[str, list[dict]]:
    """Batching off and on, side by side, at every concurrency level, with the ceiling between levels.

    The reference level (64 clients) is measured `--rounds` times, so its ratio is a median.
    """
    from retriever_server.process import ServerProcess

    levels = [int(c) for c in args.concurrency.split(",")]
    reference = reference_level(levels)
    bodies = distinct_bodies(args.passages, 20_000, seed=4)
    servers = (
        {}
        if args.url
        else {
            label: ServerProcess(serve_args(corpus, index, encoder, 0, label == "on", max_batch), wait=False)
            for label in ("off", "on")
        }
    )
    rows: dict[str, list[dict]] = {label: [] for label in (servers or {"url": None})}
    print(SERVED_HEADER, flush=True)
    try:
        for server in servers.values():
            server.wait_ready()
        targets = {label: (server.url, server.process.pid) for label, server in servers.items()} or {
            "url": (args.url, None)
        }
        for url, _ in targets.values():
            asyncio.run(drive(url, bodies[:200], 16, None))  # warm-up
        before = ceiling.measure(best) if ceiling else None
        for level in levels:
            for _ in range(args.rounds if level == reference else 1):
                level_rows = {
                    label: asyncio.run(drive(url, bodies, level, args.duration, pid))
                    for label, (url, pid) in targets.items()
                }
                after = ceiling.measure(best) if ceiling else None
                for label, row in level_rows.items():
                    if ceiling:
                        row.update(
                            {
                                f"ceiling{suffix}": (before[name] + after[name]) / 2
                                for suffix, name in (
                                    ("", "queries_per_s"),
                                    ("_cpu_ms_per_query", "cpu_ms_per_query"),
                                    ("_cores_busy", "cores_busy"),
                                )
                            }
                        )
                    rows[label].append(row)
                    print(served_row(label, row), flush=True)
                before = after
    finally:
        for server in servers.values():
            server.stop()
    return rows


def grpo(args, corpus: Path, index: Path, encoder: dict, max_batch: int) -> list[dict[str, dict]]:
    """The GRPO-like workload at 64 clients, cache off then on, `grpo_repeats` times (fresh requests each time)."""
    from retriever_server.process import ServerProcess

    servers = (
        {}
        if args.url
        else {
            label: ServerProcess(serve_args(corpus, index, encoder, size, True, max_batch), wait=False)
            for label, size in (("off", 0), ("on", 65536))
        }
    )
    pairs = []
    try:
        for server in servers.values():
            server.wait_ready()
            asyncio.run(drive(server.url, distinct_bodies(args.passages, 64, seed=99), 16, None))  # warm-up
        for repeat in range(1 if args.url else args.grpo_repeats):
            bodies = grpo_bodies(args.passages, args.grpo_requests, seed=5 + repeat)
            if args.url:
                return [{"url": asyncio.run(drive(args.url, bodies, 64, None))}]
            pairs.append(
                {
                    label: asyncio.run(drive(server.url, bodies, 64, None, server.process.pid))
                    for label, server in servers.items()
                }
            )
    finally:
        for server in servers.values():
            server.stop()
    return pairs


def run(args: argparse.Namespace) -> int:
    from retriever_server.settings import Settings, default_cache_dir

    workdir = Path(args.workdir or Path(default_cache_dir()) / "bench")
    if args.corpus_load:
        r = corpus_load(workdir, args.corpus_load)
        print(
            "| passages | JSONL | first conversion | warm load | 1000 random passages |\n|---|---|---|---|---|"
        )
        print(
            f"| {r['passages']:,} | {r['jsonl_mb']:.0f} MB | {r['convert_s']:.1f} s | {r['warm_load_s'] * 1e3:.1f} ms "
            f"| {r['read_1000_ms']:.1f} ms |"
        )
        return 0
    report: dict = {
        "passages": args.passages,
        "vectors": "random unit vectors (flat search cost is data-independent)",
    }
    corpus, index, encoder = prepare(workdir, args.passages)
    if args.url is None and args.side_by_side_rounds > 0:
        from retriever_server.bench import side_by_side

        report["side_by_side"] = side_by_side.run(
            corpus,
            index,
            encoder,
            distinct_bodies(
                args.passages,
                200 + 9 * args.side_by_side_rounds * side_by_side.per_run(args.duration),
                seed=6,
            ),
            args.side_by_side_rounds,
            args.duration,
        )
    if args.side_by_side_only:
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        return 0
    ceiling, best = None, None
    if args.url is None:
        ceiling = Ceiling(corpus, index, args.passages)
        report["ceiling_by_batch"] = by_batch = {batch: ceiling.measure(batch) for batch in CEILING_BATCHES}
        best = max(by_batch, key=lambda batch: by_batch[batch]["queries_per_s"])
        print(
            "ceiling (in process, no HTTP), queries/s (CPU ms/query) by batch: "
            + ", ".join(
                f"{b}: {m['queries_per_s']:.0f} ({m['cpu_ms_per_query']:.1f})" for b, m in by_batch.items()
            )
            + f"; best batch {best}",
            flush=True,
        )
    report["max_batch_queries"] = max_batch = args.max_batch_queries or Settings().max_batch_queries
    report["threads"] = _threads()
    print(f"threads: {report['threads']}", flush=True)
    report["served"] = served(args, corpus, index, encoder, ceiling, best, max_batch)
    report["grpo"] = grpo(args, corpus, index, encoder, max_batch)
    print_summary(report)
    if args.hnsw:
        from retriever_server.bench import ann_recall

        encoder_model = ceiling.encoder if ceiling else _encoder()
        report["hnsw"] = ann_recall.run(args.hnsw, encoder_model, workdir, args.ann_passages, index)
        print_ann(args.hnsw, report["hnsw"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


def _threads() -> str:
    import os

    from retriever_server.settings import Settings

    cores, settings = os.cpu_count() or 1, Settings()
    return (
        f"server and ceiling: torch {settings.torch_threads or cores}, faiss {settings.faiss_threads or cores} "
        f"(= the {cores} cores), one uvicorn process (uvloop + httptools) with one engine thread; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )


def _encoder():
    from retriever_server.demo import demo_encoder_config
    from retriever_server.index.encoder import Encoder

    return Encoder(demo_encoder_config(), device="cpu", batch_size=64)
