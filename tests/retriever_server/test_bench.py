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
    command = [sys.executable, "-m", "retriever_server", "bench", "--passages", "2000", "--concurrency", "1,8",
               "--duration", "1", "--grpo-requests", "40", "--workdir", str(tmp_path), "--json", str(report)]
    result = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for heading in ("ceiling (in process, no HTTP)", "| batching | clients | queries/s", "GRPO-like workload",
                    "cache gain:", "| off | 8 |", "| on | 8 |", "HNSW32 vs Flat"):
        assert heading in result.stdout, result.stdout
    figures = json.loads(report.read_text())
    assert [r["concurrency"] for r in figures["served"]["on"]] == [1, 8]
    assert figures["grpo"]["on"]["cache_hit_rate"] > 0.3 and figures["grpo"]["off"]["cache_hit_rate"] == 0
