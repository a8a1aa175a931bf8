"""Per-data-source means and their macro average, laid out like the papers' main tables.

Search-R1 and ExpandSearch report EM per dataset (NQ, TriviaQA, PopQA, HotpotQA, 2Wiki, Musique,
Bamboogle) and the unweighted mean over the datasets ("Avg." = the macro average: every dataset
counts once, whatever its size). `aggregate_by_source` computes exactly that from per-trajectory
score dicts; `expandsearch score` prints it, and the evaluation command reuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

# The column order of the papers' tables; other sources follow, sorted by name.
PAPER_ORDER = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
DEFAULT_COLUMNS = (("EM", "em"), ("F1", "f1"))


@dataclass(frozen=True)
class SourceRow:
    source: str
    n: int
    means: dict[str, float]  # metric -> mean over this source's trajectories


@dataclass(frozen=True)
class SourceTable:
    rows: list[SourceRow]  # paper order, then the other sources by name
    macro: dict[str, float]  # metric -> mean of the per-source means

    @property
    def n(self) -> int:
        return sum(row.n for row in self.rows)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: every metric per source, the macro average, and the counts."""
        return {
            "sources": {row.source: {"n": row.n, **row.means} for row in self.rows},
            "macro_average": {"n_sources": len(self.rows), **self.macro},
            "n": self.n,
        }

    def format(self, columns: Sequence[tuple[str, str]] = DEFAULT_COLUMNS) -> str:
        """A plain-text table: a row per source, then the macro average over the (count) sources."""
        macro_label = f"macro average ({len(self.rows)})"
        width = max([len(macro_label), *(len(row.source) for row in self.rows)])
        header = f"{'source':<{width}}" + "".join(f"{title:>9}" for title, _ in columns) + f"{'n':>9}"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            cells = "".join(f"{row.means.get(key, float('nan')):>9.3f}" for _, key in columns)
            lines.append(f"{row.source:<{width}}{cells}{row.n:>9}")
        lines.append("-" * len(header))
        cells = "".join(f"{self.macro.get(key, float('nan')):>9.3f}" for _, key in columns)
        lines.append(f"{macro_label:<{width}}{cells}{self.n:>9}")
        return "\n".join(lines)


def _source_order(source: str) -> tuple[int, str]:
    return (PAPER_ORDER.index(source), "") if source in PAPER_ORDER else (len(PAPER_ORDER), source)


def aggregate_by_source(scored: Iterable[tuple[str, Mapping[str, float]]]) -> SourceTable:
    """Means per data source of every numeric key, and their macro average.

    Args:
        scored: (data_source, score dict) pairs, e.g. from `expandsearch_verl.reward.compute_score`.
            A metric is averaged over the trajectories that have it; bools count as 0/1.
    """
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for source, scores in scored:
        source_sums = sums.setdefault(str(source), {})
        source_counts = counts.setdefault(str(source), {})
        totals[str(source)] = totals.get(str(source), 0) + 1
        for key, value in scores.items():
            if isinstance(value, Real):
                source_sums[key] = source_sums.get(key, 0.0) + float(value)
                source_counts[key] = source_counts.get(key, 0) + 1
    rows = [
        SourceRow(
            source, totals[source], {key: sums[source][key] / counts[source][key] for key in sums[source]}
        )
        for source in sorted(totals, key=_source_order)
    ]
    metrics = dict.fromkeys(key for row in rows for key in row.means)
    macro = {}
    for key in metrics:
        per_source = [row.means[key] for row in rows if key in row.means]
        macro[key] = sum(per_source) / len(per_source)
    return SourceTable(rows, macro)
