"""make_row and the prompt templates on a three-row fixture."""

from __future__ import annotations

import pyarrow as pa
import pytest

from data_prep.flashrag import QAExample
from data_prep.rows import AGENT_NAME, ROW_SCHEMA, make_row
from data_prep.templates import PROTOCOLS, STRATEGIES, system_prompt


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_make_row_matches_the_design_schema(protocol: str, three_rows):
    system = system_prompt("expandsearch", protocol)
    rows = [
        make_row(QAExample(i, q, tuple(a)), index, "test", "nq", system, protocol)
        for index, (i, q, a) in enumerate(three_rows)
    ]
    assert [r["extra_info"]["index"] for r in rows] == [0, 1, 2]
    row = rows[1]
    assert set(row) == {"data_source", "agent_name", "prompt", "ability", "reward_model", "extra_info"}
    assert row["agent_name"] == AGENT_NAME == "expandsearch_agent"
    assert row["ability"] == "fact-reasoning"
    assert row["prompt"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": "Question: In what city was Hồ Chí Minh born?"},
    ]
    assert row["reward_model"] == {"style": "rule", "ground_truth": {"target": ["Kim Liên", "Nghệ An"]}}
    assert row["extra_info"] == {
        "index": 1,
        "split": "test",
        "id": "a1",
        "question": "In what city was Hồ Chí Minh born?",
        "protocol": protocol,
    }
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)  # one schema for every row
    assert table.num_rows == 3


def test_templates_speak_each_protocol():
    tags = system_prompt("expandsearch", "tags", num_variants=4)
    assert "4 different queries, one per line" in tags
    assert "<search>\nquery 1\nquery 2\nquery 3\nquery 4\n</search>" in tags
    assert "<search>" in tags and "<information>" in tags and "<answer>" in tags
    call = system_prompt("expandsearch", "tool_call", num_variants=2)
    assert '{"name": "search", "arguments": {"query_list": ["query 1", "query 2"]}}' in call
    assert "<search>" not in call and "<answer>" in call
    baseline = system_prompt("searchr1", "tags")
    assert "one query between <search> and </search>" in baseline and "different queries" not in baseline
    assert '"query_list": ["your query"]' in system_prompt("searchr1", "tool_call")
    texts = {system_prompt(s, p) for s in STRATEGIES for p in PROTOCOLS}
    assert len(texts) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("expandsearch", "tags", 0), "num_variants: 0 is outside 1..10"),
        (("expandsearch", "tags", 11), "num_variants: 11 is outside 1..10"),
        (("react", "tags", 3), "strategy: unknown 'react'"),
        (("searchr1", "xml", 3), "protocol: unknown 'xml'"),
    ],
)
def test_templates_refuse_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        system_prompt(*args)
