"""One trajectory of `trajectories.jsonl` as a reader should see it: what the policy wrote, and the
observation tokens the loop inserted (mask 0, out of the policy loss) visibly marked.

Observations are bracketed by `⟦masked` … `⟧` markers (and dimmed on a terminal), so the marking
survives a pipe or a log file.
"""

from __future__ import annotations

from typing import Any

DIM, RESET = "\033[2m", "\033[0m"
OPEN, CLOSE = "⟦masked ", "⟧"
LEGEND = (
    f"legend: plain text = policy tokens (response_mask 1, trained on); {OPEN}…{CLOSE} = observation "
    "tokens inserted by the agent loop (response_mask 0, masked out of the loss)"
)


def pick_example(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most telling trajectory: one that searched, preferably answered right, then the most searches."""
    if not records:
        return None
    return max(records, key=lambda r: (r["searches"] > 0, r["em"], r.get("f1", 0.0), r["searches"]))


def render(record: dict[str, Any], *, color: bool = False) -> str:
    """The record's question, gold, answer and scores, then its turns with observations marked."""
    dim, reset = (DIM, RESET) if color else ("", "")
    head = [
        f"[{record['data_source']} / {record['id']}] {record['question']}",
        f"gold: {record['golden_answers']}   answer: {record['answer']!r}   "
        f"EM {record['em']:.0f}  F1 {record['f1']:.2f}   searches {record['searches']}, "
        f"queries {record['queries']}",
        LEGEND,
        "",
    ]
    body = []
    for turn in record["trajectory"]:
        if turn["role"] == "observation":
            body.append(f"{dim}{OPEN}{turn['text']}{CLOSE}{reset}  ({turn['tokens']} masked tokens)")
        else:
            body.append(turn["text"])
    return "\n".join(head) + "".join(body)
