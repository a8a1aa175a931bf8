"""`python -m retriever_server.bench`: the retriever server's benchmark (see `retriever_server.bench.retriever`)."""

from __future__ import annotations

import argparse
import sys

from retriever_server.bench import retriever


def main(argv: list[str] | None = None, prog: str = "python -m retriever_server.bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=retriever.__doc__.split("\n")[0])
    retriever.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return retriever.run(args)
    except (ValueError, OSError) as exc:  # bad paths or sizes: say what, not where in the code
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
