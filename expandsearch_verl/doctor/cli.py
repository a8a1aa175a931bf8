"""`expandsearch doctor`: the preflight every recipe runs before it launches verl.

    expandsearch doctor [--skip-network] [--skip CHECK ...] [--ray-address ADDR] [--json] KEY=VALUE ...

Give it the hydra overrides you give `python -m verl.trainer.main_ppo`. It composes verl's config
and runs verl's `validate_config`, checks the batch arithmetic verl only asserts on the GPUs, loads
the reward and the agent-loop YAML as the Ray workers will, reads the parquet files, the model and
its tokenizer, calls the retriever and the squeezer, and looks at this node's runtime (and, with
`--ray-address`, every node's). It prints one line per check (pass / warn / FAIL / skip) with a fix
under each problem, and exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import os
import sys

from expandsearch_verl.doctor import CHECK_NAMES, Preflight, Status, run_checks
from expandsearch_verl.doctor.context import GpuLayout
from expandsearch_verl.doctor.report import render_json, render_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="hydra overrides, as for verl.trainer.main_ppo"
    )
    parser.add_argument(
        "--skip-network", action="store_true", help="do not call the retriever, the squeezer or the model hub"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=CHECK_NAMES,
        metavar="CHECK",
        help=f"leave a check out (repeatable): {', '.join(CHECK_NAMES)}",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="a running Ray cluster whose every node to check ('auto', HOST:PORT, or 'local' to start one); "
        "default: $RAY_ADDRESS when trainer.nnodes > 1",
    )
    parser.add_argument("--timeout-s", type=float, default=10.0, help="seconds per network request")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    layout = parser.add_argument_group(
        "GPU layout on a node, for the gpu-memory plan (the recipes pass theirs)"
    )
    layout.add_argument(
        "--train-gpus",
        type=_gpu_ids,
        default=None,
        help="the trainer's GPU ids (default: $CUDA_VISIBLE_DEVICES, else 0..n_gpus_per_node-1)",
    )
    layout.add_argument(
        "--retriever-gpus",
        type=_gpu_ids,
        default=[],
        help="the retriever's GPU ids on the node (launch_retriever.sh's GPUS)",
    )
    layout.add_argument(
        "--squeezer-gpus",
        type=_gpu_ids,
        default=[],
        help="a local squeezer's GPU ids on the node (none: remote)",
    )
    layout.add_argument(
        "--index-gib",
        type=float,
        default=30.1,
        help="the dense index on GPU (wiki-18 flat: 30.1 fp16, 60.1 fp32)",
    )
    layout.add_argument(
        "--squeezer-memory-fraction", type=float, default=0.9, help="the squeezer's --gpu-memory-utilization"
    )
    layout.add_argument(
        "--gpu-memory-gib", type=float, default=None, help="each GPU's memory (default: measured, else 79.2)"
    )


def run(args: argparse.Namespace) -> int:
    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        print(
            f"error: {bad[0]!r} is not a hydra override (KEY=VALUE, +KEY=VALUE or ~KEY=...)", file=sys.stderr
        )
        return 2
    ctx = Preflight(
        list(args.overrides),
        skip_network=args.skip_network,
        ray_address=_ray_address(args),
        timeout_s=args.timeout_s,
        layout=GpuLayout(
            train_gpus=args.train_gpus,
            retriever_gpus=args.retriever_gpus,
            squeezer_gpus=args.squeezer_gpus,
            index_gib=args.index_gib,
            squeezer_memory_fraction=args.squeezer_memory_fraction,
            card_gib=args.gpu_memory_gib,
        ),
    )
    results = run_checks(ctx, skip=frozenset(args.skip))
    print(render_json(results) if args.json else render_table(results))
    return 1 if any(result.status is Status.FAIL for result in results) else 0


def _gpu_ids(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; '' -> [] (none on this node)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected GPU ids separated by commas, e.g. 0,1,2"
        ) from None


def _ray_address(args: argparse.Namespace) -> str | None:
    """--ray-address, else $RAY_ADDRESS for multi-node runs (set inside `ray job submit`)."""
    if args.ray_address:
        return args.ray_address
    nodes = next(
        (
            item.split("=", 1)[1]
            for item in reversed(args.overrides)
            if item.lstrip("+").startswith("trainer.nnodes=")
        ),
        "1",
    )
    return os.environ.get("RAY_ADDRESS") if nodes.strip() not in ("", "1") else None
