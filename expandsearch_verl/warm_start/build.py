"""Build the format warm start's SFT set: the teacher's trajectories through the real agent loop.

    python -m expandsearch_verl.warm_start.build --retriever-url http://127.0.0.1:8000 --output-dir DIR
        [--policy-model smollm2] [--set max_observation_tokens=160 ...] [--response-length 512]

1. `python -m data_prep` writes the TRAIN split of the shipped sample QA (every dataset that has
   one; never a test or dev question) as verl parquet rows, prompts in the `tags` protocol.
2. Each row runs, once per teacher style, through the agent loop that training runs (built by the
   evaluation's `LoopBuilder` from the shipped YAML, verl's config and these settings), with the
   `Teacher` in the policy's place: the prompt is rendered by the chat template (generation prompt
   added), each teacher turn goes in as its token ids with mask 1, each observation is the real
   retriever's answer through the loop's client and formatter, within the loop's budget, with mask 0.
   Nothing is re-tokenised from joined text: the ids are the loop's.
3. A multi-hop trajectory whose answer did not fit the response budget after two searches is
   built again with one; one that still does not fit is dropped (and counted), so the set never
   teaches a cut answer.
4. `DIR/warm_start.parquet` gets one row per trajectory: `input_ids` (prompt + response) and
   `loss_mask` (0 on the prompt and the observations, 1 on the teacher's tokens), plus the row's
   source, the text and the queries for reading; `TokenizedSFTDataset` feeds it to verl's SFT trainer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from expandsearch_verl.protocols import QueryLimits, parse_action
from expandsearch_verl.warm_start.teacher import STYLES, Teacher, TeacherRow

TRAIN_DATASETS = ("nq", "triviaqa", "hotpotqa", "2wikimultihopqa", "musique")  # those with a train split
# The loop's settings unless --set says otherwise; the evaluation of the trained policy should use the
# same ones (the budget it learnt). With --response-length 512 two searches and the answer fit in all
# 100 multi-hop examples (demo server, extractive squeezer); at 256 most answers would not fit.
DEFAULT_SETTINGS = ("topk=3", "max_turns=3", "max_observation_tokens=160")
OUTPUT = "warm_start.parquet"
GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "logprobs": False}
SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("id", pa.string()),
        ("style", pa.int8()),
        ("input_ids", pa.list_(pa.int32())),
        ("loss_mask", pa.list_(pa.int8())),
        ("prompt_length", pa.int32()),
        ("searches", pa.int8()),
        ("queries", pa.list_(pa.list_(pa.string()))),
        ("response", pa.string()),
    ]
)


class WarmStartError(RuntimeError):
    """The set cannot be built (a non-train row, data_prep failed); the message says which."""


@dataclass(frozen=True)
class BuildReport:
    rows: int  # train questions read
    examples: int  # trajectories kept
    dropped: int  # trajectories whose answer did not fit the response budget
    searches: Counter  # trajectories by number of searches


def train_rows(data_dir: Path) -> list[Any]:
    """The train split of the sample QA as evaluation rows (written by data_prep into `data_dir`)."""
    from data_prep.cli import main as data_prep
    from expandsearch_verl.evaluation.rows import read_rows

    status = data_prep(
        ["--output-dir", str(data_dir), "--train-datasets", ",".join(TRAIN_DATASETS), "--test-datasets", "",
         "--protocol", "tags", "--overwrite"]
    )  # fmt: skip
    if status != 0:
        raise WarmStartError(f"data_prep failed (exit status {status}) writing {data_dir}")
    rows = read_rows(data_dir / "train.parquet")
    not_train = [row.key for row in rows if row.run_kwargs["extra_info"].get("split") != "train"]
    if not_train:
        raise WarmStartError(
            f"rows {not_train[:3]} are not from a train split: the warm start never sees them"
        )
    return rows


async def build_examples(
    rows: list[Any], builder: Any, concurrency: int = 8
) -> tuple[list[dict], BuildReport]:
    """Every row in every teacher style through the agent loop; the kept examples, in row order."""
    from expandsearch_verl.retriever_client import close_shared_clients

    semaphore = asyncio.Semaphore(concurrency)

    async def one(row: Any, style: int) -> dict[str, Any] | None:
        name = builder.resolve_name(row.agent_name)
        settings = builder.settings[name]
        limits = QueryLimits(settings.max_queries, settings.max_query_chars)
        teacher_row = TeacherRow(row.data_source, row.question, row.golden_answers[0], style)
        for second_search in (True, False) if teacher_row.multi_hop else (False,):
            async with semaphore:
                teacher = Teacher(builder.tokenizer, teacher_row, second_search=second_search)
                output = await builder.build(name, teacher).run(dict(GREEDY), **row.run_kwargs)
            example = example_of(row, style, output, builder.tokenizer, limits)
            if example is not None:
                return example
        return None

    try:
        results = await asyncio.gather(*(one(row, style) for row in rows for style in STYLES))
    finally:
        await close_shared_clients()
    examples = [example for example in results if example is not None]
    report = BuildReport(
        rows=len(rows),
        examples=len(examples),
        dropped=len(results) - len(examples),
        searches=Counter(example["searches"] for example in examples),
    )
    return examples, report


def example_of(
    row: Any, style: int, output: Any, tokenizer: Any, limits: QueryLimits
) -> dict[str, Any] | None:
    """The SFT row of one trajectory, or None if its answer was cut by the response budget."""
    response = tokenizer.decode(output.response_ids, skip_special_tokens=False)
    if not response.rstrip().endswith("</answer>"):
        return None
    turns = response.split("<information>")
    queries = [action.queries for action in (parse_action(turn, "tags", limits) for turn in turns[:-1])]
    return {
        "data_source": row.data_source,
        "id": row.id,
        "style": style,
        "input_ids": list(output.prompt_ids) + list(output.response_ids),
        "loss_mask": [0] * len(output.prompt_ids) + list(output.response_mask),
        "prompt_length": len(output.prompt_ids),
        "searches": len(queries),
        "queries": queries,
        "response": response,
    }


def write_examples(examples: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(examples, schema=SCHEMA), tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    from expandsearch_verl.agent_loop_config import shipped_path
    from expandsearch_verl.config import AgentLoopConfig
    from expandsearch_verl.evaluation.loop_builder import LoopBuilder
    from retriever_server.models import hf_source

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--retriever-url", required=True, help="a running retriever (e.g. serve --demo)")
    parser.add_argument("--output-dir", type=Path, required=True, help="data/ and warm_start.parquet go here")
    parser.add_argument("--policy-model", default="smollm2", help="whose tokenizer and chat template")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="agent-loop setting")
    parser.add_argument("--prompt-length", type=int, default=1024)
    parser.add_argument("--response-length", type=int, default=512)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    model_path = hf_source(args.policy_model)
    assignments = [*DEFAULT_SETTINGS, *args.set, f"retriever_urls={args.retriever_url}", "protocol=tags"]
    config = AgentLoopConfig().with_overrides(assignments)  # parses and checks every value
    settings = {key: getattr(config, key) for key in (item.partition("=")[0].strip() for item in assignments)}
    builder = LoopBuilder(
        shipped_path(),
        tokenizer=AutoTokenizer.from_pretrained(model_path),
        model_path=model_path,
        prompt_length=args.prompt_length,
        response_length=args.response_length,
        settings=settings,
    )
    rows = train_rows(args.output_dir / "data")
    examples, report = asyncio.run(build_examples(rows, builder))
    write_examples(examples, args.output_dir / OUTPUT)
    trained = sum(sum(example["loss_mask"]) for example in examples)
    print(
        f"{report.examples} examples from {report.rows} train questions x {len(STYLES)} styles "
        f"({report.dropped} dropped: answer past the response budget); searches per example "
        f"{json.dumps(dict(sorted(report.searches.items())))}; {trained} trained tokens "
        f"-> {args.output_dir / OUTPUT}",
        file=sys.stderr,
    )
    return 0 if examples else 1


if __name__ == "__main__":
    sys.exit(main())
