"""`expandsearch agent-loop-config`: where the agent-loop YAML is, or a validated variant of it.

    expandsearch agent-loop-config
        prints the absolute path of the YAML shipped in the package, for
        actor_rollout_ref.rollout.agent.agent_loop_config_path=$(expandsearch agent-loop-config)
    expandsearch agent-loop-config --set max_queries=1 --set topk=3 --set squeeze=false --output sr1.yaml
        writes a copy with those values (checked like the loop checks them) and prints its path.

Values are YAML: `squeeze=null`, `retriever_urls=[http://a:8000,http://b:8000]` (or a comma list).
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path

from expandsearch_verl.config import AgentLoopConfig, ConfigError

SHIPPED_YAML = "agent_loops.yaml"


def shipped_path() -> Path:
    """Absolute path of the agent-loop YAML inside the installed package."""
    return Path(str(files("expandsearch_verl").joinpath(SHIPPED_YAML))).resolve()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting (repeatable); the value is YAML, e.g. squeeze=false",
    )
    parser.add_argument("--output", type=Path, help="write the YAML with the overrides here (needs --set)")


def run(args: argparse.Namespace) -> int:
    if not args.assignments and args.output is None:
        print(shipped_path())
        return 0
    if args.output is None:
        print("error: --set needs --output PATH (the shipped YAML is never changed)", file=sys.stderr)
        return 2
    try:
        config = AgentLoopConfig().with_overrides(args.assignments)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(config.to_yaml())
    print(args.output.resolve())
    return 0
