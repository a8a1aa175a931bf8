"""Fixtures for `expandsearch eval` / `demo`: a policy server double, prepared data, checked loops.

- `policy_server`: `ScriptedPolicyServer` (vLLM's OpenAI completions protocol, a rule-based policy
  over the tiny chat model's tokenizer) in a uvicorn thread on loopback; `policy_process(*flags)`
  starts it as a child process (`--die-after N` crashes it mid-run, `--text-only` drops token ids).
- `eval_data(protocol, n)`: data_prep's parquet of the shipped samples, `n` rows per dataset.
- `checked_loops`: every loop `expandsearch eval` builds checks each output against the agent-loop
  invariants (`assert_invariants` of the parent conftest) with the calls it made.
- `expandsearch_cli(*args)` / `eval_cli(*args)`: `expandsearch [eval] ARGS` here -> (status, stdout, stderr).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from engine_doubles import GenerateCall, RecordingGenerator

sys.path.insert(0, str(Path(__file__).parent))  # record_checks.py, for the test modules too
from record_checks import check_output_records

from data_prep.cli import main as data_prep
from expandsearch_verl.cli import main as expandsearch
from expandsearch_verl.evaluation.loop_builder import LoopBuilder
from retriever_server.scripted.policy_server import ScriptedPolicyServer

REPO_ROOT = Path(__file__).resolve().parents[3]


class ThreadedServer:
    """An ASGI app served by uvicorn in a daemon thread on 127.0.0.1."""

    def __init__(self, app: Any, port: int):
        self.app, self.url = app, f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the policy server did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def _policy_thread(chat_model_dir, chat_tokenizer):
    from retriever_server.process import free_port

    server = ThreadedServer(ScriptedPolicyServer(chat_tokenizer, root=str(chat_model_dir)), free_port())
    yield server
    server.stop()


@pytest.fixture
def policy_server(_policy_thread) -> ThreadedServer:
    """The scripted policy on loopback, its completion count reset."""
    _policy_thread.app.completions = 0
    return _policy_thread


@pytest.fixture
def policy_process(chat_model_dir):
    """`policy_process(*flags)` -> URL of a scripted policy child process; killed after the test."""
    from retriever_server.process import free_port

    started: list[subprocess.Popen] = []

    def start(*flags: str) -> str:
        port = free_port()
        command = [sys.executable, "-m", "retriever_server.scripted.policy_server"]
        started.append(
            subprocess.Popen(
                [*command, "--tokenizer", str(chat_model_dir), "--port", str(port), *flags], cwd=REPO_ROOT
            )
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert started[-1].poll() is None, "the scripted policy exited at start"
            try:
                httpx.get(f"{url}/v1/models", timeout=1)
                return url
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the scripted policy did not start"
                time.sleep(0.1)

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory):
    """`eval_data(protocol="tags", n=2)` -> test.parquet of the shipped samples, n rows per dataset."""
    made: dict[tuple[str, int], Path] = {}

    def make(protocol: str = "tags", n: int = 2) -> Path:
        if (protocol, n) not in made:
            directory = tmp_path_factory.mktemp(f"data_{protocol}_{n}")
            arguments = ["--output-dir", str(directory), "--train-datasets", "", "--protocol", protocol]
            assert data_prep([*arguments, "--max-per-dataset", str(n)]) == 0
            made[protocol, n] = directory / "test.parquet"
        return made[protocol, n]

    return make


class CheckedCalls(RecordingGenerator):
    """Forwards to the real policy and records the calls the way the invariants read them."""

    def __init__(self, policy: Any, tokenizer: Any):
        super().__init__(tokenizer)
        self.policy = policy

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        output = await self.policy.generate(
            request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs
        )
        call = GenerateCall(list(prompt_ids), dict(sampling_params), list(output.token_ids), [])
        self.calls.append(call)
        return output


@pytest.fixture
def checked_loops(monkeypatch, check_output):
    """Every loop the evaluation builds checks its outputs; returns the list of checked outputs."""
    checked: list[Any] = []
    build = LoopBuilder.build

    def checked_build(self, agent_name, server_manager):
        calls = CheckedCalls(server_manager, self.tokenizer)
        loop = build(self, agent_name, calls)
        run = loop.run

        async def checked_run(sampling_params, **kwargs):
            output = await run(sampling_params, **kwargs)
            check_output(output, calls, int(self.trainer_config.actor_rollout_ref.rollout.response_length))
            checked.append(output)
            return output

        loop.run = checked_run
        return loop

    monkeypatch.setattr(LoopBuilder, "build", checked_build)
    return checked


@pytest.fixture
def expandsearch_cli(capsys):
    """`expandsearch_cli(*args)` -> (status, stdout, stderr) of `expandsearch ARGS` run here."""

    def run(*args: Any) -> tuple[int, str, str]:
        capsys.readouterr()
        status = expandsearch(list(map(str, args)))
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def eval_cli(expandsearch_cli):
    """`eval_cli(*args)` -> (status, stdout, stderr) of `expandsearch eval ARGS` run here."""
    return lambda *args: expandsearch_cli("eval", *args)


@pytest.fixture
def check_records():
    """`check_records(output_dir, n_rows, response_length)`: every record checked, each row once."""
    return check_output_records
