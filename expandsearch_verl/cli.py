"""`expandsearch`: the umbrella command. Each subcommand lives in its own module.

A subcommand module exposes `add_arguments(parser)` and `run(args) -> int`; it is imported only
when chosen, so `expandsearch --help` stays fast and a broken optional dependency of one command
cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from expandsearch_verl import __version__

# name -> (module, one-line help). Later features add their line here.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "agent-loop-config": (
        "expandsearch_verl.agent_loop_config",
        "print the path of the agent-loop YAML for verl, or write a variant with --set/--output",
    ),
    "doctor": (
        "expandsearch_verl.doctor.cli",
        "preflight a training run: verl config, batches, reward, agent loop, data, model, services",
    ),
    "score": ("expandsearch_verl.rescore", "rescore a JSONL dump of trajectories: EM / F1 per data source"),
    "eval": (
        "expandsearch_verl.evaluation.eval_cli",
        "evaluate a policy with the training agent loop: EM / F1 per dataset",
    ),
    "demo": (
        "expandsearch_verl.evaluation.demo",
        "the whole pipeline on the shipped samples, offline on CPU, in minutes",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only `command`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="expandsearch",
        description="ExpandSearch on verl: data, retrieval, training helpers and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"expandsearch-verl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("EXPANDSEARCH_LOGGING_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(importlib.import_module(SUBCOMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
