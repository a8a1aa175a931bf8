"""Checks on the train and validation parquet files against the row contract (docs/design.md, "Parquet row").

Only the columns a check needs are read, and prompt lengths are measured with arrow compute, so a
170k-row training file costs about a second. The prompts are measured in characters for all rows
and in tokens (the actor's chat template) for the longest few, which is what `data.truncation=error`
would trip on mid-epoch.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from expandsearch_verl.doctor.context import Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed, skipped, warned
from expandsearch_verl.protocols import PROTOCOLS

PAPER_TEST_SETS = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
LONGEST_PROMPTS_TOKENIZED = 32
REGENERATE = "regenerate it with `python -m data_prep` (docs/data-prep.md)"


def check_train_data(ctx: Preflight) -> list[CheckResult]:
    return _check_split(ctx, "train-data", "data.train_files", train=True)


def check_val_data(ctx: Preflight) -> list[CheckResult]:
    return _check_split(ctx, "val-data", "data.val_files", train=False) + _validation_batches(ctx)


def _validation_batches(ctx: Preflight) -> list[CheckResult]:
    """verl sends the whole validation set to the rollout at once unless `data.val_batch_size` is set:
    ~51k questions of the seven test sets, and three searches and squeezes for each, in one burst."""
    import pyarrow.parquet as pq

    if ctx.select("data.val_batch_size") is not None:
        return []
    files = ctx.select("data.val_files")
    paths = [Path(str(file)).expanduser() for file in ([files] if isinstance(files, str) else files or [])]
    if not paths or not all(path.is_file() for path in paths):
        return []
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
    sample = ctx.select("data.val_max_samples", -1)
    rows = min(rows, sample) if sample > 0 else rows
    step = ctx.select("data.train_batch_size")
    if rows <= step:
        return []
    return [
        warned(
            "val-data",
            f"data.val_batch_size is unset: each validation sends all {rows:,} rows to the rollout, the retriever "
            f"and the squeezer at once (a training step sends {step})",
            f"data.val_batch_size={step}",
        )
    ]


def schema_problems(schema: Any) -> list[str]:
    """Where a parquet schema departs from the row contract (extra columns and fields are fine)."""
    from data_prep.rows import ROW_SCHEMA

    problems: list[str] = []
    for expected in ROW_SCHEMA:
        index = schema.get_field_index(expected.name)
        if index < 0:
            problems.append(f"column '{expected.name}' is missing")
        else:
            problems += _type_problems(expected.name, expected.type, schema.field(index).type)
    return problems


def _check_split(ctx: Preflight, name: str, key: str, train: bool) -> list[CheckResult]:
    files = ctx.select(key)
    files = [files] if isinstance(files, str) else list(files or [])
    if not files:
        return [
            failed(name, f"{key} is empty", f"{key}=/absolute/path/{'train' if train else 'test'}.parquet")
        ]
    results = [
        [skipped(name, f"{file}: a remote path (verl copies it at start); not read here")]
        if "://" in str(file)
        else _check_file(ctx, name, Path(str(file)).expanduser(), train)
        for file in files
    ]
    return [result for group in results for result in group]


def _check_file(ctx: Preflight, name: str, path: Path, train: bool) -> list[CheckResult]:
    import pyarrow.parquet as pq

    if not path.is_file():
        return [
            failed(
                name, f"{path}: no such file", f"prepare it: python -m data_prep --output-dir {path.parent}"
            )
        ]
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        return [
            failed(name, f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})", REGENERATE)
        ]
    problems = schema_problems(parquet.schema_arrow)
    prompt_key = ctx.select("data.prompt_key", "prompt")
    if prompt_key != "prompt":
        problems.append(f"data.prompt_key={prompt_key}: the rows keep their chat messages in 'prompt'")
    if problems:
        return [failed(name, f"{path}: " + "; ".join(problems), REGENERATE)]
    table = parquet.read(columns=["data_source", "agent_name", "prompt", "reward_model", "extra_info"])
    rows = table.num_rows
    results: list[CheckResult] = []
    results += _check_rows(ctx, name, path, rows, train)
    results += _check_agent_names(ctx, name, path, table)
    results += _check_columns(name, path, table, train)
    results += _check_prompt_lengths(ctx, name, path, table)
    if any(result.status == "fail" for result in results):
        return results
    sources = Counter(table.column("data_source").to_pylist())
    shown = ", ".join(f"{source} {count:,}" for source, count in sources.most_common())
    return [*results, passed(name, f"{path}: {rows:,} rows ({shown})")]


def _check_rows(ctx: Preflight, name: str, path: Path, rows: int, train: bool) -> list[CheckResult]:
    batch = ctx.select("data.train_batch_size")
    if rows == 0:
        return [failed(name, f"{path} has no rows", REGENERATE)]
    if train and rows < batch:
        return [
            failed(
                name,
                f"{path}: {rows} rows < data.train_batch_size={batch}; the loader drops the partial batch, "
                "so an epoch has no step",
                f"data.train_batch_size={rows} or prepare more training rows",
            )
        ]
    return []


def _check_agent_names(ctx: Preflight, name: str, path: Path, table: Any) -> list[CheckResult]:
    if ctx.agent_loops is None:
        return []
    import pyarrow.compute as pc
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    # the YAML's entries and verl's built-in loops (reach `agent_loop_registry`)
    known = set(ctx.agent_loops) | set(_agent_loop_registry)
    used = sorted(map(str, pc.unique(table.column("agent_name")).to_pylist()))
    unknown = [agent for agent in used if agent not in known]
    if unknown:
        return [
            failed(
                name,
                f"{path}: rows name agent loop(s) {unknown}, which neither the agent-loop YAML nor verl defines "
                f"(the YAML has {sorted(ctx.agent_loops)})",
                f"use the YAML that defines {unknown[0]}, or {REGENERATE}",
            )
        ]
    return []


def _check_columns(name: str, path: Path, table: Any, train: bool) -> list[CheckResult]:
    import pyarrow.compute as pc

    results = []
    targets = pc.struct_field(pc.struct_field(table.column("reward_model"), "ground_truth"), "target")
    no_answer = pc.sum(pc.equal(pc.fill_null(pc.list_value_length(targets), 0), 0)).as_py() or 0
    if no_answer:
        results.append(
            failed(
                name,
                f"{path}: {no_answer} rows have no gold answer in reward_model.ground_truth.target",
                REGENERATE,
            )
        )
    protocols = set(pc.unique(pc.struct_field(table.column("extra_info"), "protocol")).to_pylist())
    if not protocols <= set(PROTOCOLS):
        results.append(
            failed(
                name,
                f"{path}: extra_info.protocol has {sorted(map(str, protocols - set(PROTOCOLS)))}; "
                f"the reward knows {list(PROTOCOLS)}",
                REGENERATE,
            )
        )
    if not train:
        present = set(pc.unique(table.column("data_source")).to_pylist())
        missing = [source for source in PAPER_TEST_SETS if source not in present]
        if missing:
            results.append(
                warned(
                    name,
                    f"{path}: {len(PAPER_TEST_SETS) - len(missing)} of the papers' 7 test sets; missing {missing}",
                    "python -m data_prep --test-datasets with all seven, for numbers comparable with the papers",
                )
            )
    return results


def _check_prompt_lengths(ctx: Preflight, name: str, path: Path, table: Any) -> list[CheckResult]:
    """Tokenize the longest prompts (by characters) with the actor's chat template."""
    if ctx.tokenizer is None:
        return []
    import numpy as np
    import pyarrow.compute as pc

    prompts = table.column("prompt").combine_chunks()
    chars = pc.fill_null(pc.utf8_length(pc.struct_field(pc.list_flatten(prompts), "content")), 0).to_numpy()
    per_row = np.bincount(pc.list_parent_indices(prompts).to_numpy(), weights=chars, minlength=len(prompts))
    longest = np.argsort(per_row)[::-1][:LONGEST_PROMPTS_TOKENIZED]
    limit = ctx.select("data.max_prompt_length")
    tokens = max(_prompt_tokens(ctx.tokenizer, prompts[int(i)].as_py()) for i in longest)
    if (
        tokens <= limit
        or ctx.select("data.filter_overlong_prompts", False)
        or ctx.select("data.truncation") != "error"
    ):
        return []
    return [
        failed(
            name,
            f"{path}: a prompt is {tokens} tokens with the chat template > data.max_prompt_length={limit}; "
            "with data.truncation=error verl stops when it meets it",
            f"data.max_prompt_length={tokens} or data.filter_overlong_prompts=True",
        )
    ]


def _prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return len(ids)


def _type_problems(where: str, expected: Any, actual: Any) -> list[str]:
    import pyarrow as pa

    if pa.types.is_struct(expected):
        if not pa.types.is_struct(actual):
            return [f"'{where}' is {actual}, expected a struct"]
        problems = []
        for child in expected:
            index = actual.get_field_index(child.name)
            if index < 0:
                problems.append(f"'{where}.{child.name}' is missing")
            else:
                problems += _type_problems(f"{where}.{child.name}", child.type, actual.field(index).type)
        return problems
    if pa.types.is_list(expected):
        if not (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
            return [f"'{where}' is {actual}, expected a list"]
        return _type_problems(f"{where}[]", expected.value_type, actual.value_type)
    same_kind = (
        (pa.types.is_string(expected) and (pa.types.is_string(actual) or pa.types.is_large_string(actual)))
        or (pa.types.is_integer(expected) and pa.types.is_integer(actual))
        or expected.equals(actual)
    )
    return [] if same_kind else [f"'{where}' is {actual}, expected {expected}"]
