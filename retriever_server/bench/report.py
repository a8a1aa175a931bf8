"""The `bench` command's tables and summary lines, printed from its report dict.

Kept apart from the measuring (`bench`) so each module does one thing; every figure printed here is
computed from the report, so `--json` holds the same numbers.
"""

from __future__ import annotations

import statistics


def reference_level(levels: list[int]) -> int:
    """The targets are stated at 64 clients; a --concurrency list without 64 reports its largest level."""
    return 64 if 64 in levels else max(levels)


def cpu_cell(r: dict) -> str:
    return f"{r['client_cpu_ms']:.2f} / {r['server_loop_cpu_ms']:.2f} / {r['server_engine_cpu_ms']:.1f}"


def served_row(label: str, r: dict) -> str:
    ratio = f"{r['queries_per_s'] / r['ceiling']:.2f}" if r.get("ceiling") else "-"
    return (
        f"| {label} | {r['concurrency']} | {r['queries_per_s']:.0f} | {r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | "
        f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_batch_queries']:.0f} | {r.get('ceiling', 0):.0f} | "
        f"{ratio} | {cpu_cell(r)} | {r['engine_busy']:.2f} | {r['cores_busy']:.2f} |"
    )


SERVED_HEADER = (
    "| batching | clients | queries/s | requests/s | p50 ms | p95 ms | p99 ms | queries/batch | "
    "ceiling q/s (next to it) | served/ceiling | CPU ms/request: load gen / event loop / engine | "
    "engine busy | cores busy |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _cpu_ms_per_request(r: dict) -> float:
    return r["client_cpu_ms"] + r["server_loop_cpu_ms"] + r["server_engine_cpu_ms"]


def print_summary(report: dict) -> None:
    rows = report["served"]
    if "on" in rows and "off" in rows:
        print(
            "\nbatching on / off, queries/s: "
            + ", ".join(
                f"{on['concurrency']} clients {on['queries_per_s'] / off['queries_per_s']:.1f}x"
                for off, on in zip(rows["off"], rows["on"], strict=True)
            )
        )
    batched = rows.get("on") or rows.get("url") or []
    if batched:
        level = reference_level([r["concurrency"] for r in batched])
        at = f"at {level} clients"
        refs = [r for r in batched if r["concurrency"] == level]
        if refs[0].get("ceiling"):
            ratios = [r["queries_per_s"] / r["ceiling"] for r in refs]
            # per query, all the CPU of serving (load generator + event loop + engine) against the ceiling's
            cpu_ratios = [
                r["ceiling_cpu_ms_per_query"]
                * r["queries_per_s"]
                / r["requests_per_s"]
                / _cpu_ms_per_request(r)
                for r in refs
            ]
            print(
                f"served/ceiling {at}: median {statistics.median(ratios):.2f} over {len(refs)} rounds ("
                + ", ".join(f"{x:.2f}" for x in ratios)
                + "); CPU-normalised (ceiling CPU per query / all CPU "
                f"per served query): median {statistics.median(cpu_ratios):.2f}; cores this run got: served "
                f"{statistics.median(r['cores_busy'] for r in refs):.2f}, ceiling "
                f"{statistics.median(r['ceiling_cores_busy'] for r in refs):.2f} (medians)"
            )
        print(f"p99/p50 {at}: " + ", ".join(f"{r['p99_ms'] / r['p50_ms']:.2f}" for r in refs))
        ref = refs[len(refs) // 2]
        engine, other = ref["server_engine_cpu_ms"], ref["client_cpu_ms"] + ref["server_loop_cpu_ms"]
        if engine:
            print(
                f"CPU per request {at}: engine {engine:.1f} ms, outside it {other:.2f} ms (load generator "
                f"{ref['client_cpu_ms']:.2f}, server event loop {ref['server_loop_cpu_ms']:.2f}): "
                f"engine share {engine / (engine + other):.2f}"
            )
    if report.get("grpo"):
        print("\nGRPO-like workload (each request sent by 5 rollouts, 64 clients, batching on):")
        print(
            "| run | cache | requests/s | p50 ms | p99 ms | cache hit rate | CPU ms/request: load gen / event loop / "
            "engine |\n|---|---|---|---|---|---|---|"
        )
        for i, pair in enumerate(report["grpo"], 1):
            for label, r in pair.items():
                print(
                    f"| {i} | {label} | {r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                    f"{r['cache_hit_rate']:.2f} | {cpu_cell(r)} |"
                )
        pairs = [pair for pair in report["grpo"] if "on" in pair]
        if pairs:
            gains = [pair["on"]["requests_per_s"] / pair["off"]["requests_per_s"] for pair in pairs]
            cpu_gains = [_cpu_ms_per_request(pair["off"]) / _cpu_ms_per_request(pair["on"]) for pair in pairs]
            print(
                "cache gain (on / off, requests/s): "
                + ", ".join(f"{g:.2f}x" for g in gains)
                + f"; median {statistics.median(gains):.2f}x; CPU per request, off / on: median "
                f"{statistics.median(cpu_gains):.2f}x"
            )


def print_ann(factory: str, ann: dict) -> None:
    names = {
        "sample": "sample corpus, MiniLM, sample questions",
        "minilm": "synthetic passages, MiniLM, query variants",
        "random": "random unit vectors, noisy copies",
    }
    print(f"\n{factory} vs Flat (batch 64, in process; each speed-up the median of 3 alternated pairs):")
    print(
        "| set | passages | efSearch | recall@10 | queries/s | Flat queries/s | speed-up |\n|---|---|---|---|---|---|---|"
    )
    for name, r in ann.items():
        for ef, e in r["ef_search"].items():
            print(
                f"| {names[name]} | {r['passages']:,} | {ef} | {e['recall_at_10']:.3f} | {e['queries_per_s']:.0f} | "
                f"{e['flat_queries_per_s']:.0f} | {e['speed_up']:.1f}x |"
            )
