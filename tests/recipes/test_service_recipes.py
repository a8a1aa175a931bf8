"""The launch, download and multi-node scripts: their dry runs parsed by the real programs' own option
parsers (retriever_server's, `hf`'s, `ray start`'s), so a renamed flag breaks here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def flags(argv: list[str]) -> set[str]:
    return {item.split("=", 1)[0] for item in argv if item.startswith("--")}


def help_flags(*command: str) -> set[str]:
    text = subprocess.run(
        [str(BIN / command[0]), *command[1:], "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": str(BIN), "COLUMNS": "200", "NO_COLOR": "1"},
    ).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", text))


def serve_settings(argv: list[str]):
    from retriever_server.__main__ import build_parser
    from retriever_server.settings import settings_from_args

    assert argv[:4] == ["python3", "-m", "retriever_server", "serve"]
    return settings_from_args(build_parser().parse_args(argv[3:]))


def test_launch_retriever_serves_wiki18_on_the_chosen_gpus_with_the_squeezer(recipe_env, dry_run, tmp_path):
    settings = serve_settings(
        dry_run("launch_retriever.sh", recipe_env(WIKI18_DIR=str(tmp_path), GPUS="0,1", HOST="0.0.0.0"))
    )
    assert (
        settings.corpus == f"{tmp_path}/wiki-18.jsonl.gz"
        and settings.dense_index == f"{tmp_path}/e5_Flat.index"
    )
    assert list(settings.gpus) == [0, 1] and settings.host == "0.0.0.0" and settings.port == 8000
    assert settings.squeezer == "openai" and settings.squeezer_url == "http://127.0.0.1:8001/v1"
    assert (
        settings.squeezer_model == "meta-llama/Llama-3.1-8B-Instruct"
        and settings.squeezer_api_key_env is None
    )


def test_launch_retriever_without_squeezer_or_with_nim(recipe_env, dry_run):
    argv = dry_run("launch_retriever.sh", recipe_env(SQUEEZER="none"))
    assert serve_settings(argv).squeezer == "none" and "--squeezer-url" not in argv
    argv = dry_run(
        "launch_retriever.sh",
        recipe_env(
            SQUEEZER_URL="https://integrate.api.nvidia.com/v1",
            SQUEEZER_API_KEY_ENV="NVIDIA_API_KEY",
            SQUEEZER_MODEL="meta/llama-4-maverick-17b-128e-instruct",
        ),
    )
    settings = serve_settings(argv)
    assert settings.squeezer_api_key_env == "NVIDIA_API_KEY" and settings.squeezer_model.startswith(
        "meta/llama-4-maverick"
    )


def test_launch_retriever_passes_extra_flags_through(recipe_env, dry_run):
    argv = dry_run("launch_retriever.sh", recipe_env(), "--cache-size", "0")
    assert argv[-2:] == ["--cache-size", "0"] and serve_settings(argv).cache_size == 0


def test_download_uses_real_hf_flags_and_the_published_repositories(recipe_env, dry_run, tmp_path):
    lines = dry_run("download_wiki18.sh", recipe_env(WIKI18_DIR=str(tmp_path)))
    downloads = [line.split() for line in lines if line.startswith("hf download")]
    assert [words[2] for words in downloads] == ["PeterJinGo/wiki-18-corpus", "PeterJinGo/wiki-18-e5-index"]
    known = help_flags("hf", "download")
    assert all(flags(words) <= known for words in downloads), known
    assert lines[-1] == f"cat {tmp_path}/part_aa {tmp_path}/part_ab > {tmp_path}/e5_Flat.index"
    assert not any(tmp_path.iterdir())  # a dry run downloads nothing


def test_ray_head_and_worker_use_real_ray_flags(recipe_env, dry_run):
    head = dry_run("multinode/start_ray_head.sh", recipe_env())
    worker = dry_run("multinode/start_ray_worker.sh", recipe_env(HEAD_ADDRESS="10.0.0.1", BLOCK="1"))
    assert head[:3] == ["ray", "start", "--head"] and worker[:4] == [
        "ray",
        "start",
        "--address",
        "10.0.0.1:6379",
    ]
    assert "--block" in worker
    known = help_flags("ray", "start")
    assert flags(head) <= known and flags(worker) <= known, known


def test_the_worker_needs_the_heads_address(recipe_env, run_recipe):
    result = run_recipe("multinode/start_ray_worker.sh", recipe_env())
    assert result.returncode != 0 and "HEAD_ADDRESS" in result.stderr
