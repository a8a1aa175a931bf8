"""One FlashRAG example -> one verl parquet row (docs/design.md, "Parquet row"), as a pure function."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from data_prep.flashrag import QAExample
from data_prep.templates import render_prompt

AGENT_NAME = "expandsearch_agent"  # the entry of expandsearch_verl/agent_loops.yaml that runs each row
ABILITY = "fact-reasoning"

# Every row of a file has exactly these keys and types (pyarrow needs one schema, verl one layout).
ROW_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("agent_name", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        (
            "reward_model",
            pa.struct(
                [("style", pa.string()), ("ground_truth", pa.struct([("target", pa.list_(pa.string()))]))]
            ),
        ),
        (
            "extra_info",
            pa.struct(
                [
                    ("index", pa.int64()),
                    ("split", pa.string()),
                    ("id", pa.string()),
                    ("question", pa.string()),
                    ("protocol", pa.string()),
                ]
            ),
        ),
    ]
)


def make_row(
    example: QAExample, index: int, split: str, data_source: str, system: str, protocol: str
) -> dict[str, Any]:
    """The parquet row of `example`; `index` is its position in the output file (unique per file)."""
    return {
        "data_source": data_source,
        "agent_name": AGENT_NAME,
        "prompt": render_prompt(example.question, system),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": {"target": list(example.golden_answers)}},
        "extra_info": {
            "index": index,
            "split": split,
            "id": example.id,
            "question": example.question,
            "protocol": protocol,
        },
    }
