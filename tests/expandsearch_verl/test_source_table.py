"""Per-source aggregation: paper order, macro average, text and JSON layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from expandsearch_verl.source_table import PAPER_ORDER, aggregate_by_source


def test_rows_follow_the_paper_then_the_rest_by_name():
    scored = [
        (name, {"em": 1.0}) for name in ["zsre", "bamboogle", "nq", "custom", "2wikimultihopqa", "popqa"]
    ]
    table = aggregate_by_source(scored)
    assert [row.source for row in table.rows] == [
        "nq",
        "popqa",
        "2wikimultihopqa",
        "bamboogle",
        "custom",
        "zsre",
    ]
    assert PAPER_ORDER == ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")


def test_macro_average_weights_every_source_once():
    scored = (
        [("nq", {"em": 1.0, "f1": 1.0})] * 3
        + [("nq", {"em": 0.0, "f1": 0.5})]
        + [("hotpotqa", {"em": 0.0, "f1": 0.0})]
    )
    table = aggregate_by_source(scored)
    nq, hotpotqa = table.rows
    assert (nq.n, nq.means) == (4, {"em": 0.75, "f1": 0.875})
    assert (hotpotqa.n, hotpotqa.means) == (1, {"em": 0.0, "f1": 0.0})
    assert table.macro == {"em": 0.375, "f1": 0.4375}  # not the micro average 0.6 / 0.7
    assert table.n == 5


def test_numeric_keys_of_any_kind_are_averaged_and_others_skipped():
    table = aggregate_by_source(
        [
            ("nq", {"em": np.float32(1.0), "num_searches": np.int64(3), "format_ok": True, "note": "x"}),
            ("nq", {"em": 0}),
        ]
    )
    (row,) = table.rows
    assert row.means == {"em": 0.5, "num_searches": 3.0, "format_ok": 1.0}


def test_text_table_layout():
    table = aggregate_by_source([("nq", {"em": 0.5, "f1": 0.6}), ("bamboogle", {"em": 0.25, "f1": 1 / 3})])
    lines = table.format().splitlines()
    assert lines[0].split() == ["source", "EM", "F1", "n"]
    assert lines[2].split() == ["nq", "0.500", "0.600", "1"]
    assert lines[3].split() == ["bamboogle", "0.250", "0.333", "1"]
    assert lines[-1].split() == ["macro", "average", "(2)", "0.375", "0.467", "2"]


def test_json_layout():
    table = aggregate_by_source([("nq", {"em": 1.0}), ("nq", {"em": 0.0})])
    assert table.to_dict() == {
        "sources": {"nq": {"n": 2, "em": 0.5}},
        "macro_average": {"n_sources": 1, "em": 0.5},
        "n": 2,
    }


def test_missing_metric_shows_as_nan_and_empty_input_is_an_empty_table():
    table = aggregate_by_source([("nq", {"em": 1.0})])
    assert "nan" in table.format(columns=(("EM", "em"), ("F1", "f1")))
    empty = aggregate_by_source([])
    assert (empty.rows, empty.macro, empty.n) == ([], {}, 0)
    assert math.isnan(table.macro.get("f1", math.nan))


@pytest.mark.parametrize("source", [1, None])
def test_non_string_sources_become_names(source):
    assert aggregate_by_source([(source, {"em": 1.0})]).rows[0].source == str(source)
