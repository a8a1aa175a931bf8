"""plugin / engine / trainer / gpus: this node's runtime, with the environment-bound facts faked where
the CPU machine cannot have them (a GPU, vLLM), and the plugin probe run for real."""

from __future__ import annotations

import importlib.util
import stat
import sys
from pathlib import Path

import pytest

from expandsearch_verl.doctor import runtime
from expandsearch_verl.doctor.report import Status


def fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/usr/bin/env bash\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_the_plugin_probe_imports_from_a_fresh_interpreter(small_run, preflight):
    _, results = preflight(small_run(), "plugin")
    assert (
        len(results) == 1 and "expandsearch_verl" in results[0].detail
    )  # pass here, or warn for a stale install


def test_a_plugin_only_on_pythonpath_fails(small_run, preflight, tmp_path, monkeypatch):
    monkeypatch.setattr(
        sys,
        "executable",
        fake_python(
            tmp_path, "echo \"ModuleNotFoundError: No module named 'expandsearch_verl'\" >&2; exit 1"
        ),
    )
    _, results = preflight(small_run(), "plugin")
    assert results[0].status is Status.FAIL and "No module named 'expandsearch_verl'" in results[0].detail
    assert "pip install -e ." in results[0].fix


def test_another_checkouts_install_warns(small_run, preflight, tmp_path, monkeypatch):
    monkeypatch.setattr(
        sys, "executable", fake_python(tmp_path, "echo /elsewhere/expandsearch_verl/__init__.py")
    )
    _, results = preflight(small_run(), "plugin")
    assert results[0].status is Status.WARN and "/elsewhere/expandsearch_verl" in results[0].detail


@pytest.fixture
def installed(monkeypatch):
    """`installed(*modules)`: make find_spec see exactly these of vllm / sglang / transfer_queue."""
    real = importlib.util.find_spec

    def fake(modules):
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: (
                object()
                if name in modules
                else None
                if name in ("vllm", "sglang", "transfer_queue")
                else real(name, *a)
            ),
        )

    return lambda *modules: fake(modules)


def test_the_rollout_engine_must_be_installed(small_run, preflight, installed):
    installed()
    _, results = preflight(small_run(), "engine")
    assert results[0].status is Status.FAIL and '".[gpu]"' in results[0].fix
    installed("vllm")
    _, results = preflight(small_run(), "engine")
    assert results[0].status is Status.PASS


def test_the_v1_trainer_needs_transfer_queue(small_run, preflight, installed):
    installed()
    _, results = preflight(small_run("trainer.use_v1=true"), "trainer")
    assert results[0].status is Status.FAIL and "trainer.use_v1=false" in results[0].fix
    _, results = preflight(small_run("trainer.use_v1=false"), "trainer")
    assert results[0].status is Status.PASS
    installed("transfer_queue")
    _, results = preflight(small_run("trainer.use_v1=true"), "trainer")
    assert results[0].status is Status.PASS


def test_gpus_are_counted_on_one_node(small_run, preflight, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    _, results = preflight(small_run(), "gpus")
    assert results[0].status is Status.FAIL and results[0].fix.startswith("trainer.n_gpus_per_node=1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    _, results = preflight(small_run(), "gpus")
    assert results[0].status is Status.FAIL and "--skip gpus" in results[0].fix
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    _, results = preflight(small_run(), "gpus")
    assert results[0].status is Status.PASS
    _, results = preflight(small_run("trainer.nnodes=2"), "gpus")
    assert results[0].status is Status.SKIP


def test_engine_names_map_to_their_packages():
    assert runtime.ENGINE_MODULES == {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt_llm"}


@pytest.mark.parametrize(
    ("engine", "status"), [("hf", Status.PASS), ("scripted", Status.PASS), ("vllm", Status.FAIL)]
)
def test_a_cpu_run_takes_the_cpu_backends_rollouts_only(small_run, preflight, engine, status):
    _, results = preflight(
        small_run("trainer.device=cpu", f"actor_rollout_ref.rollout.name={engine}"), "engine"
    )
    assert results[0].status is status
    if status is Status.FAIL:
        assert "rollout.name=vllm with trainer.device=cpu" in results[0].detail
        assert results[0].fix.startswith("actor_rollout_ref.rollout.name=hf")
