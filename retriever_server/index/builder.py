"""`build-index`: encode a corpus into a faiss index (or index it with BM25), resumably.

Dense builds encode the corpus in shards of `shard_size` passages, each written atomically as an
fp16 `.npy` under `<output>/embeddings/`; an interrupted build skips the shards already on disk.
Then the index is assembled shard by shard (trained first on a sample when the factory string needs
training, e.g. IVF-PQ), so RAM holds the index plus one shard, never all embeddings at once.

    python -m retriever_server build-index --corpus wiki-18.jsonl --output indexes/e5_flat
    python -m retriever_server build-index --corpus wiki-18.jsonl --output indexes/e5_hnsw --factory HNSW64
    python -m retriever_server build-index --corpus wiki-18.jsonl --output indexes/bm25 --kind bm25
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from retriever_server.index.corpus import CorpusStore
from retriever_server.index.dense import INDEX_FILE
from retriever_server.index.encoder import Encoder, EncoderConfig
from retriever_server.index.params import write_params

logger = logging.getLogger(__name__)


def _shard_path(directory: Path, shard: int) -> Path:
    return directory / f"shard_{shard:05d}.npy"


def encode_shards(
    corpus: CorpusStore, encoder: Encoder, directory: Path, shard_size: int, show_progress: bool = True
) -> int:
    """Write every missing shard of fp16 passage embeddings; returns how many were already done."""
    from tqdm import tqdm

    directory.mkdir(parents=True, exist_ok=True)
    _check_manifest(
        directory,
        {
            "corpus_fingerprint": corpus.fingerprint,
            "shard_size": shard_size,
            "encoder": encoder.config.identity(),
        },
    )
    n_shards = -(-len(corpus) // shard_size)
    done = 0
    with tqdm(total=len(corpus), desc="encode", unit=" passages", disable=not show_progress) as bar:
        for shard in range(n_shards):
            start, stop = shard * shard_size, min(len(corpus), (shard + 1) * shard_size)
            path = _shard_path(directory, shard)
            if path.is_file() and np.load(path, mmap_mode="r").shape == (stop - start, encoder.dim):
                done += 1
                bar.update(stop - start)
                continue
            embeddings = np.empty((stop - start, encoder.dim), dtype=np.float16)
            for chunk_start in range(start, stop, encoder.batch_size):
                chunk_stop = min(stop, chunk_start + encoder.batch_size)
                texts = list(corpus.iter_contents(chunk_start, chunk_stop))
                embeddings[chunk_start - start : chunk_stop - start] = encoder.encode(texts, is_query=False)
                bar.update(chunk_stop - chunk_start)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, embeddings)
            os.replace(tmp, path)  # a shard exists whole or not at all
    if done:
        logger.warning("resumed: %d of %d shards were already encoded", done, n_shards)
    return done


def _check_manifest(directory: Path, manifest: dict) -> None:
    """Shards on disk are reused only if they came from the same corpus, encoder and shard size."""
    path = directory / "manifest.json"
    if path.is_file():
        found = json.loads(path.read_text())
        if found != manifest:
            raise ValueError(
                f"{directory} holds shards of another build ({found}); delete it or rebuild "
                "with the same corpus, encoder settings and --shard-size"
            )
    else:
        path.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("shard_*[0-9].npy"))


def assemble_index(directory: Path, dim: int, factory: str, train_size: int, seed: int = 0):
    """Build the faiss index from the shards: train on a sample if needed, then add shard by shard."""
    import faiss

    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    shards = _shards(directory)
    if not index.is_trained:
        total = sum(np.load(path, mmap_mode="r").shape[0] for path in shards)
        rng = np.random.default_rng(seed)
        sample = []
        for path in shards:
            rows = np.load(path, mmap_mode="r")
            take = max(1, round(train_size * rows.shape[0] / total))
            picked = np.sort(rng.choice(rows.shape[0], size=min(take, rows.shape[0]), replace=False))
            sample.append(np.asarray(rows[picked], dtype=np.float32))
        index.train(np.concatenate(sample))
    for path in shards:
        index.add(np.asarray(np.load(path), dtype=np.float32))
    return index


def build_dense(
    corpus: CorpusStore,
    encoder: Encoder,
    output: Path,
    factory: str = "Flat",
    shard_size: int = 100_000,
    train_size: int = 1_000_000,
    keep_embeddings: bool = False,
    show_progress: bool = True,
) -> Path:
    """Encode (resumably) and write `<output>/index.faiss` + params.json."""
    import faiss

    output.mkdir(parents=True, exist_ok=True)
    embeddings = output / "embeddings"
    encode_shards(corpus, encoder, embeddings, shard_size, show_progress=show_progress)
    index = assemble_index(embeddings, encoder.dim, factory, train_size)
    faiss.write_index(index, str(output / (INDEX_FILE + ".tmp")))
    os.replace(output / (INDEX_FILE + ".tmp"), output / INDEX_FILE)
    write_params(
        output,
        {
            "kind": "dense",
            "factory": factory,
            "dim": encoder.dim,
            "metric": "inner_product",
            "corpus_size": len(corpus),
            "corpus_fingerprint": corpus.fingerprint,
            "encoder": encoder.config.identity(),
        },
    )
    if not keep_embeddings:
        shutil.rmtree(embeddings)
    return output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corpus", required=True, help="wiki-18-style JSONL(.gz) or a converted corpus directory"
    )
    parser.add_argument("--output", required=True, help="index directory to write (resumes if it exists)")
    parser.add_argument("--kind", choices=["dense", "bm25"], default="dense")
    parser.add_argument(
        "--factory", default="Flat", help="faiss index factory string: Flat, HNSW64, IVF4096,PQ64, ..."
    )
    parser.add_argument("--encoder", default=EncoderConfig.model)
    parser.add_argument("--pooling", default=EncoderConfig.pooling, choices=["mean", "cls", "pooler"])
    parser.add_argument("--query-prefix", default=EncoderConfig.query_prefix)
    parser.add_argument("--passage-prefix", default=EncoderConfig.passage_prefix)
    parser.add_argument("--max-length", type=int, default=EncoderConfig.max_length)
    parser.add_argument("--no-normalize", action="store_true", help="keep raw embeddings (E5 normalises)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-fp16", action="store_true", help="encode in fp32 on GPU")
    parser.add_argument("--batch-size", type=int, default=512, help="passages per encoder forward")
    parser.add_argument("--shard-size", type=int, default=100_000, help="passages per resumable shard")
    parser.add_argument(
        "--train-size", type=int, default=1_000_000, help="training sample for IVF/PQ factories"
    )
    parser.add_argument("--keep-embeddings", action="store_true", help="keep the fp16 shards after the build")
    parser.add_argument(
        "--cache-dir", default=None, help="where the converted corpus goes (default: the cache dir)"
    )


def run(args: argparse.Namespace) -> int:
    from retriever_server.index.bm25 import build_bm25
    from retriever_server.settings import default_cache_dir

    corpus = CorpusStore.open(args.corpus, args.cache_dir or default_cache_dir(), show_progress=True)
    output = Path(args.output)
    if args.kind == "bm25":
        build_bm25(corpus, output)
    else:
        config = EncoderConfig(
            model=args.encoder,
            pooling=args.pooling,
            query_prefix=args.query_prefix,
            passage_prefix=args.passage_prefix,
            max_length=args.max_length,
            normalize=not args.no_normalize,
        )
        encoder = Encoder(config, device=args.device, fp16=not args.no_fp16, batch_size=args.batch_size)
        build_dense(
            corpus,
            encoder,
            output,
            factory=args.factory,
            shard_size=args.shard_size,
            train_size=args.train_size,
            keep_embeddings=args.keep_embeddings,
        )
    print(f"wrote {args.kind} index of {len(corpus)} passages to {output}")
    return 0
