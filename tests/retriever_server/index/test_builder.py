"""build-index: an interrupted build resumes from its shards and gives the same index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]


def build_command(corpus: Path, output: Path, cache: Path, minilm: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "retriever_server",
        "build-index",
        "--corpus",
        str(corpus),
        "--output",
        str(output),
        "--encoder",
        str(minilm),
        "--query-prefix",
        "",
        "--passage-prefix",
        "",
        "--cache-dir",
        str(cache),
        "--shard-size",
        "10",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]


def test_builder_resumes_after_an_interruption(synthetic_indexes, minilm_path, tmp_path):
    output = tmp_path / "dense"
    command = build_command(synthetic_indexes["corpus"], output, synthetic_indexes["cache"], minilm_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shards = output / "embeddings"
    deadline = time.monotonic() + 120
    while not (shards / "shard_00001.npy").exists():
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no shard was written in time"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # no chance to clean up: a real crash
    first.wait()
    done = sorted(path.name for path in shards.glob("shard_*[0-9].npy"))
    assert 2 <= len(done) < 12 and not (output / "params.json").exists()
    kept_mtime = (shards / "shard_00000.npy").stat().st_mtime_ns

    second = subprocess.run(
        [*command, "--keep-embeddings"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed: {len(done)} of 12 shards were already encoded" in second.stderr
    assert "wrote dense index of 120 passages" in second.stdout
    assert (shards / "shard_00000.npy").stat().st_mtime_ns == kept_mtime  # skipped, not re-encoded
    resumed = faiss.read_index(str(output / "index.faiss"))
    reference = faiss.read_index(str(synthetic_indexes["dense"] / "index.faiss"))
    assert resumed.ntotal == reference.ntotal == 120
    np.testing.assert_allclose(resumed.reconstruct_n(0, 120), reference.reconstruct_n(0, 120), atol=2e-3)


def test_shards_of_another_build_are_not_reused(synthetic_indexes, minilm_path, tmp_path):
    output = tmp_path / "dense"
    (output / "embeddings").mkdir(parents=True)
    (output / "embeddings" / "manifest.json").write_text('{"shard_size": 7}')
    command = build_command(synthetic_indexes["corpus"], output, synthetic_indexes["cache"], minilm_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert (
        result.returncode == 2
        and "error:" in result.stderr
        and "holds shards of another build" in result.stderr
    )
    assert "Traceback" not in result.stderr
