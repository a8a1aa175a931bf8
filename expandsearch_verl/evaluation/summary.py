"""The evaluation's summary: the papers' table and how the agent searched, from the records.

EM and F1 per data source with the macro average (every dataset counts once: the papers' "Avg."
column) come from `source_table.aggregate_by_source`, the aggregation `expandsearch score` prints.
Besides: searches and queries per trajectory, the retrieval hit rate (a gold answer occurs in a
retrieved passage), the squeeze rate (searches answered with a squeezer summary, of those that
succeeded), search failures, and latencies (whole trajectories, generate calls, searches).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from expandsearch_verl.reward import SCORE_KEYS
from expandsearch_verl.source_table import SourceTable, aggregate_by_source

# The papers' column headers for the seven evaluation sets; other sources keep their names.
PAPER_NAMES = {
    "nq": "NQ",
    "triviaqa": "TriviaQA",
    "popqa": "PopQA",
    "hotpotqa": "HotpotQA",
    "2wikimultihopqa": "2Wiki",
    "musique": "Musique",
    "bamboogle": "Bamboogle",
}
TABLE_COLUMNS = (
    ("EM", "em"),
    ("F1", "f1"),
    ("hit", "retrieval_hit"),
    ("search", "num_searches"),
    ("queries", "num_queries"),
    ("format", "format_ok"),
)
# Averaged per data source: the reward's keys and the loop's numeric metrics.
_AVERAGED = (
    *SCORE_KEYS,
    "num_unique_docs",
    "squeezed_fraction",
    "observation_tokens",
    "invalid_actions",
    "search_failures",
    "num_turns",
    "response_tokens",
    "latency_ms",
)


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def source_table(records: Sequence[dict[str, Any]]) -> SourceTable:
    return aggregate_by_source(
        (record["data_source"], {key: record[key] for key in _AVERAGED if key in record})
        for record in records
    )


def summarize(
    records: Sequence[dict[str, Any]], *, run: dict[str, Any] | None = None, new: int = 0, wall_s: float = 0.0
) -> dict[str, Any]:
    """The summary.json of `records`; `new` of them were evaluated in this run, in `wall_s` seconds."""
    table = source_table(records)
    n = len(records)
    searches = sum(record["num_searches"] for record in records)
    failures = sum(record["search_failures"] for record in records)
    succeeded = searches - failures
    squeezed = sum(
        record["squeezed_fraction"] * (record["num_searches"] - record["search_failures"])
        for record in records
    )
    search_ms = sum(record["search_latency_ms"] * record["num_searches"] for record in records)
    return {
        "n": n,
        "em_macro_average": table.macro.get("em", 0.0),
        "f1_macro_average": table.macro.get("f1", 0.0),
        "em_per_source": {row.source: row.means["em"] for row in table.rows},
        "table": table.to_dict(),
        "searches_per_trajectory": searches / n if n else 0.0,
        "queries_per_trajectory": sum(record["num_queries"] for record in records) / n if n else 0.0,
        "queries_per_search": sum(record["num_queries"] for record in records) / searches
        if searches
        else 0.0,
        "retrieval_hit_rate": _mean(record["retrieval_hit"] for record in records),
        "squeeze_rate": squeezed / succeeded if succeeded else 0.0,
        "squeeze_fallbacks": sum(record.get("squeeze_fallbacks", 0) for record in records),
        "search_failures": failures,
        "search_failure_rate": failures / searches if searches else 0.0,
        "trajectories_with_search_failures": sum(1 for record in records if record["search_failures"]),
        "answer_rate": _mean(record["has_answer"] for record in records),
        "format_ok_rate": _mean(record["format_ok"] for record in records),
        "latency_ms": {
            "trajectory": _percentiles([record["latency_ms"] for record in records]),
            "generate_call": _percentiles([ms for record in records for ms in record["generate_ms"]]),
            "search_call_mean": search_ms / searches if searches else 0.0,
        },
        "this_run": {
            "trajectories": new,
            "wall_s": round(wall_s, 3),
            "trajectories_per_s": new / wall_s if wall_s > 0 else 0.0,
        },
        "run": run or {},
    }


def paper_row(table: SourceTable, key: str = "em") -> tuple[list[str], list[str]]:
    """(headers, cells) of one metric in the papers' layout: a column per dataset, then Avg."""
    headers = [PAPER_NAMES.get(row.source, row.source) for row in table.rows] + ["Avg."]
    cells = [f"{row.means.get(key, float('nan')):.3f}" for row in table.rows] + [
        f"{table.macro.get(key, 0.0):.3f}"
    ]
    return headers, cells


def format_summary(summary: dict[str, Any], table: SourceTable) -> str:
    """The printed summary: the per-source table, the papers' layout, search behaviour, latencies."""
    headers, em = paper_row(table, "em")
    _, f1 = paper_row(table, "f1")
    widths = [max(len(header), 5) + 2 for header in headers]
    latency = summary["latency_ms"]
    lines = [
        table.format(TABLE_COLUMNS),
        "",
        "paper layout  "
        + "".join(f"{header:>{width}}" for header, width in zip(headers, widths, strict=True)),
        "EM            " + "".join(f"{cell:>{width}}" for cell, width in zip(em, widths, strict=True)),
        "F1            " + "".join(f"{cell:>{width}}" for cell, width in zip(f1, widths, strict=True)),
        "",
        f"searches per trajectory {summary['searches_per_trajectory']:.2f} "
        f"({summary['queries_per_search']:.2f} queries each); retrieval hit rate {summary['retrieval_hit_rate']:.3f}; "
        f"squeezed {summary['squeeze_rate']:.0%} of searches"
        + (
            f" ({summary['squeeze_fallbacks']} fell back to passages: the squeezer failed or ran past its budget)"
            if summary["squeeze_fallbacks"]
            else ""
        )
        + "; "
        f"search failures {summary['search_failures']} ({summary['search_failure_rate']:.1%})",
        f"latency: trajectory p50 {latency['trajectory']['p50']:.0f} ms, p90 {latency['trajectory']['p90']:.0f} ms; "
        f"generate call p50 {latency['generate_call']['p50']:.0f} ms; search mean {latency['search_call_mean']:.0f} ms",
    ]
    this_run = summary["this_run"]
    if this_run["trajectories"]:
        lines.append(
            f"this run: {this_run['trajectories']} trajectories in {this_run['wall_s']:.1f} s "
            f"({this_run['trajectories_per_s']:.2f}/s)"
        )
    return "\n".join(lines)


def plot_em(table: SourceTable, path: Path) -> None:
    """A bar chart of EM per dataset and the macro average, as a PNG.

    Raises:
        PlotUnavailable: matplotlib is not installed (pip install "expandsearch-verl[plot]").
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable('the plot needs matplotlib: pip install "expandsearch-verl[plot]"') from None
    headers, cells = paper_row(table, "em")
    values = [float(cell) for cell in cells]
    figure, axes = plt.subplots(figsize=(1.1 * len(headers) + 2, 3.6))
    bars = axes.bar(headers, values, color=["#4c72b0"] * (len(headers) - 1) + ["#dd8452"])
    axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set_ylabel("exact match")
    axes.set_ylim(0, max(1.0, *values) * 1.1)
    axes.set_title(f"EM per dataset (n = {table.n})")
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, dpi=120, format="png")
    plt.close(figure)
    os.replace(partial, path)  # never a half-written PNG


def _mean(values: Any) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(np.mean(values))}
