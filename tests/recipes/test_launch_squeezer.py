"""recipes/launch_squeezer.sh: the `vllm serve` line it runs, with a stand-in `vllm` on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import node_with_gpus

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "launch_squeezer.sh"


def run_recipe(tmp_path: Path, env: dict, *args: str) -> list[str]:
    fake = tmp_path / "bin" / "vllm"
    node_with_gpus(fake.parent, 8)  # nvidia-smi: an 8-GPU node, whatever runs the tests
    fake.write_text(
        f'#!/usr/bin/env bash\nprintf "%s\\n" "$@"\necho "$CUDA_VISIBLE_DEVICES" > {tmp_path}/visible\n'
    )
    fake.chmod(0o755)
    ours = (
        "MODEL",
        "PORT",
        "TP",
        "API_KEY",
        "HOST",
        "GPUS",
        "CUDA_VISIBLE_DEVICES",
        "TRAIN_GPUS",
        "SQUEEZER_GPUS",
    )
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    result = subprocess.run(
        ["bash", str(RECIPE), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**clean, "PATH": f"{fake.parent}:{os.environ['PATH']}", **env},
    )
    return result.stdout.splitlines()


def test_defaults_serve_llama_3_1_8b_for_the_retriever(tmp_path):
    argv = run_recipe(tmp_path, {})
    assert argv[:2] == ["serve", "meta-llama/Llama-3.1-8B-Instruct"]
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags["--port"] == "8001" and flags["--host"] == "127.0.0.1" and flags["--max-model-len"] == "8192"
    assert flags["--served-model-name"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "--enable-prefix-caching" in argv and "--api-key" not in argv


def test_environment_toggles_and_extra_flags(tmp_path):
    argv = run_recipe(
        tmp_path,
        {"MODEL": "/models/llama-70b", "TP": "4", "PORT": "9001", "API_KEY": "k"},
        "--max-num-batched-tokens",
        "16384",
    )
    assert argv[1] == "/models/llama-70b"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4" and argv[argv.index("--port") + 1] == "9001"
    assert argv[argv.index("--api-key") + 1] == "k" and argv[-2:] == ["--max-num-batched-tokens", "16384"]


def test_the_squeezer_takes_the_last_visible_gpu_unless_told(tmp_path):
    """GPUs 0-6 train beside the index (docs/gpu-layout.md); CUDA_VISIBLE_DEVICES, GPUS and TP choose others."""
    run_recipe(tmp_path, {})
    assert (tmp_path / "visible").read_text().strip() == "7"
    run_recipe(tmp_path, {"CUDA_VISIBLE_DEVICES": "1,3"})
    assert (tmp_path / "visible").read_text().strip() == "3"
    run_recipe(tmp_path, {"CUDA_VISIBLE_DEVICES": "2,3,4,5", "GPUS": "2,3", "TP": "2"})
    assert (tmp_path / "visible").read_text().strip() == "2,3"
