"""Run `python -m retriever_server serve ...` as a child process and wait until /health says ok.

Used by the benchmark (the server must not share a GIL with its load generator) and by the test
suite's `demo_retriever_url` fixture. Stopping sends SIGTERM (uvicorn's graceful shutdown) and
kills only if that does not finish in time, so no orphan is left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        serve_args: list[str],
        timeout_s: float = 300,
        env: dict | None = None,
        wait: bool = True,
        cwd: Path = REPO_ROOT,
        module: tuple[str, ...] = ("retriever_server", "serve"),
        unset: tuple[str, ...] = (),
    ):
        """`module`: what `python -m` runs (any server taking --host and --port); `unset`: environment
        variables the child must not inherit."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            *module,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *serve_args,
        ]
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop); a pipe nobody reads could block it
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env={name: value for name, value in {**os.environ, **(env or {})}.items() if name not in unset},
            stdout=self.log,
            stderr=self.log,
            text=True,
        )
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 300) -> None:
        """Return once /health says ok; raise (and stop the server) if it exits or takes longer."""
        try:
            self._poll_health(timeout_s)
        except BaseException:  # also Ctrl-C or SIGTERM while it starts: no orphan either
            self.stop()
            raise

    def _poll_health(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}: {self.log.read()[-3000:]}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the server on {self.url} was not ready after {timeout_s} s")

    def stop(self, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
