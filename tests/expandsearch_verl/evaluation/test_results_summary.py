"""The output files (resumable, never half-written) and the summary computed from the records."""

from __future__ import annotations

import json
import sys

import pytest

from expandsearch_verl.evaluation.results import ResultsDir, ResultsError, load_records, write_json_atomic
from expandsearch_verl.evaluation.summary import (
    PlotUnavailable,
    format_summary,
    paper_row,
    plot_em,
    source_table,
    summarize,
)


def record(
    source: str, row_id: str, *, em: float = 0.0, searches: int = 1, failures: int = 0, squeezed: float = 0.0
):
    return {
        "data_source": source,
        "id": row_id,
        "em": em,
        "f1": em,
        "score": em,
        "retrieval_hit": 1.0,
        "has_answer": 1.0,
        "format_ok": 1.0,
        "num_searches": searches,
        "num_queries": 3 * searches,
        "search_failures": failures,
        "squeezed_fraction": squeezed,
        "search_latency_ms": 100.0,
        "latency_ms": 1000.0,
        "generate_ms": [10.0, 30.0],
    }


def test_load_records_cuts_a_half_written_line_and_refuses_a_corrupt_one(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    assert load_records(path) == []
    good = json.dumps(record("nq", "a")) + "\n"
    path.write_text(good + '{"data_source": "nq", "id": "b", "em"')
    assert load_records(path) == [record("nq", "a")]
    assert path.read_text() == good  # the cut line is gone from the file too
    path.write_text("garbage\n" + good)
    with pytest.raises(ResultsError, match=r"trajectories.jsonl:1: not a JSON record; move the file away"):
        load_records(path)
    path.write_text(good + '{"em": 1}\n')
    with pytest.raises(ResultsError, match=r":2: not an evaluation record"):
        load_records(path)


def test_results_dir_refuses_other_settings_and_starts_again_with_overwrite(tmp_path):
    run = {"policy": "ckpt-100", "agent_loops": {"expandsearch_agent": {"topk": 10}}}
    results = ResultsDir(tmp_path / "out")
    assert results.open(run) == []
    results.append(record("nq", "a"))
    results.close()
    again = ResultsDir(tmp_path / "out")
    assert again.open(run) == [record("nq", "a")]
    again.close()
    changed = {"policy": "ckpt-200", "agent_loops": {"expandsearch_agent": {"topk": 3}}}
    with pytest.raises(ResultsError) as refused:
        ResultsDir(tmp_path / "out").open(changed)
    assert "agent_loops.expandsearch_agent.topk: 10 -> 3; policy: 'ckpt-100' -> 'ckpt-200'" in str(
        refused.value
    )
    fresh = ResultsDir(tmp_path / "out")
    assert fresh.open(changed, overwrite=True) == []
    fresh.close()
    assert json.loads((tmp_path / "out" / "run.json").read_text()) == changed


def test_write_json_atomic_leaves_no_temporary_file(tmp_path):
    write_json_atomic(tmp_path / "summary.json", {"n": 1})
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]


def test_summary_counts_searches_squeezes_failures_and_latencies():
    records = [
        record("hotpotqa", "1", em=1.0, searches=2, failures=1, squeezed=1.0),  # 1 of 1 succeeded squeezed
        record("nq", "1", em=1.0, searches=2, squeezed=0.5),  # 1 of 2 squeezed
        record("nq", "2", em=0.0, searches=0),
        record("custom", "1", em=0.5, searches=1),
    ]
    summary = summarize(records, run={"policy": "p"}, new=2, wall_s=4.0)
    assert summary["n"] == 4
    assert summary["em_per_source"] == {"nq": 0.5, "hotpotqa": 1.0, "custom": 0.5}
    assert summary["em_macro_average"] == pytest.approx(2.0 / 3)  # every dataset counts once
    assert list(summary["table"]["sources"]) == ["nq", "hotpotqa", "custom"]  # papers' order, then others
    assert summary["searches_per_trajectory"] == 5 / 4 and summary["queries_per_search"] == 3.0
    assert summary["squeeze_rate"] == pytest.approx(2 / 4)  # 2 squeezed of 4 searches that succeeded
    assert summary["search_failures"] == 1 and summary["search_failure_rate"] == 1 / 5
    assert summary["trajectories_with_search_failures"] == 1
    assert summary["latency_ms"]["generate_call"]["p50"] == 20.0
    assert summary["latency_ms"]["search_call_mean"] == 100.0
    assert summary["this_run"] == {"trajectories": 2, "wall_s": 4.0, "trajectories_per_s": 0.5}
    table = source_table(records)
    assert paper_row(table) == (["NQ", "HotpotQA", "custom", "Avg."], ["0.500", "1.000", "0.500", "0.667"])
    printed = format_summary(summary, table)
    assert "macro average (3)" in printed and "squeezed 50% of searches" in printed
    assert "search failures 1 (20.0%)" in printed and "this run: 2 trajectories in 4.0 s" in printed
    assert summary["squeeze_fallbacks"] == 0 and "fell back" not in printed  # records without the key: none


def test_squeeze_fallbacks_are_counted_and_said():
    records = [
        {**record("nq", "1", searches=2, squeezed=0.5), "squeeze_fallbacks": 1},
        {**record("nq", "2", searches=1), "squeeze_fallbacks": 1},
        {**record("nq", "3", searches=1, squeezed=1.0), "squeeze_fallbacks": 0},
    ]
    summary = summarize(records)
    assert summary["squeeze_fallbacks"] == 2 and summary["squeeze_rate"] == pytest.approx(2 / 4)
    printed = format_summary(summary, source_table(records))
    assert "squeezed 50% of searches (2 fell back to passages" in printed


def test_plot_is_a_png_or_a_clear_message(tmp_path, monkeypatch):
    table = source_table([record("nq", "1", em=1.0), record("popqa", "1")])
    plot_em(table, tmp_path / "em.png")
    assert (tmp_path / "em.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [path.name for path in tmp_path.iterdir()] == ["em.png"]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(PlotUnavailable, match=r'pip install "expandsearch-verl\[plot\]"'):
        plot_em(table, tmp_path / "other.png")
