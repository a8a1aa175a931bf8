"""`python -m retriever_server {serve,build-index,bench}`.

python -m retriever_server serve --demo                      # sample corpus + MiniLM, dense and BM25
python -m retriever_server serve --config retriever.yaml     # flags override the file
python -m retriever_server serve --corpus wiki-18.jsonl --dense-index e5_Flat.index --gpus 0,1
python -m retriever_server build-index --corpus wiki-18.jsonl --output indexes/e5_flat
python -m retriever_server bench                             # = python -m retriever_server.bench
"""

from __future__ import annotations

import os

# torch and faiss each bring an OpenMP runtime; the engine thread alternates between them (encode,
# then search). With the default active wait, one runtime's idle threads spin while the other's
# work, and on 2 cores a 100k flat search ran 5-8x slower. Must be set before either is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import logging
import sys

from retriever_server.index import builder
from retriever_server.settings import add_settings_arguments, settings_from_args


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from retriever_server.api.app import create_app

    try:
        settings = settings_from_args(args)
        settings.validate()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed: list[str] = []

    def stop_on_load_error(reason: str) -> None:
        failed.append(reason)
        server.should_exit = True

    app = create_app(settings, on_load_error=stop_on_load_error)
    # One process (workers=1): a second would load a second encoder and index and split the batches.
    # uvloop and httptools: ~15% less event-loop CPU per /search than asyncio + h11 (0.9 vs 1.1 ms here).
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        access_log=False,
    )
    server = uvicorn.Server(config)
    print(
        f"retriever_server: listening on http://{settings.host}:{settings.port} (loading; /health says when ready)",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    if failed:
        print(f"error: loading failed: {failed[0]}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retriever_server", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_settings_arguments(commands.add_parser("serve", help="serve /retrieve, /search, /health, /metrics"))
    builder.add_arguments(
        commands.add_parser("build-index", help="encode a corpus into a faiss or BM25 index")
    )
    # listed for --help only: `main` hands `bench ...` to the benchmark's own parser, so that `serve`
    # imports none of the benchmark (nor aiohttp and psutil, its `bench` extra)
    commands.add_parser(
        "bench", help="throughput and latency under concurrent clients (python -m retriever_server.bench)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("EXPANDSEARCH_LOGGING_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from retriever_server.bench.__main__ import main as bench

        return bench(argv[1:], prog="python -m retriever_server bench")
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    try:
        return builder.run(args)
    except (ValueError, OSError) as exc:  # bad paths, corpora, settings: say what, not where in the code
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
