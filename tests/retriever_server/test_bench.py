"""The benchmark script runs end to end on a small corpus and prints every table (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_every_table(tmp_path):
    report = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "retriever_server",
        "bench",
        "--passages",
        "2000",
        "--concurrency",
        "1,8",
        "--duration",
        "1",
        "--rounds",
        "2",
        "--side-by-side-rounds",
        "1",
        "--grpo-requests",
        "40",
        "--grpo-repeats",
        "1",
        "--ann-passages",
        "300",
        "--workdir",
        str(tmp_path),
        "--json",
        str(report),
    ]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first_table = result.stdout.index("| round | clients | baseline req/s | ours req/s")
    assert first_table < result.stdout.index("ceiling (in process, no HTTP)"), result.stdout
    for heading in (
        "ours/baseline at 1 clients over 1 rounds",
        "ours/baseline at 64 clients over 1 rounds",
        "ceiling (in process, no HTTP)",
        "| batching | clients | queries/s",
        "GRPO-like workload",
        "cache gain",
        "| off | 8 |",
        "| on | 8 |",
        "HNSW32 vs Flat",
        "CPU per request at",
        "| synthetic passages, MiniLM, query variants | 300 |",
    ):
        assert heading in result.stdout, result.stdout
    figures = json.loads(report.read_text())
    assert [m["clients"] for m in figures["side_by_side"]] == [1, 16, 64]
    assert all(
        m["baseline"]["requests_per_s"] > 0 and m["ours"]["requests_per_s"] > 0
        for m in figures["side_by_side"]
    )
    assert [r["concurrency"] for r in figures["served"]["on"]] == [1, 8, 8]  # the reference level, twice
    on = figures["served"]["on"][1]
    assert on["ceiling"] > 0 and on["ceiling_cpu_ms_per_query"] > 0 and on["server_engine_cpu_ms"] > 0
    assert on["client_cpu_ms"] > 0 and on["server_loop_cpu_ms"] > 0
    assert "served/ceiling at 8 clients: median" in result.stdout
    (pair,) = figures["grpo"]
    # with the cache on, the engine computes each distinct query about once (0.2 of those received):
    # a copy is a cache hit or joins its twin in flight, a split the timing decides
    assert pair["on"]["computed_rate"] < 0.5 and pair["off"]["cache_hit_rate"] == 0
    assert set(figures["hnsw"]) == {"sample", "minilm", "random"}
