"""`serve` imports none of the benchmark tooling (nor its `bench` extra's aiohttp)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The real `python -m retriever_server serve --demo` in a thread of a child process: once it has
# answered a /search, the child prints the modules it holds.
SERVE_THEN_LIST_MODULES = """
import sys, threading, time
import httpx
from retriever_server.__main__ import main
from retriever_server.process import free_port

port = free_port()
threading.Thread(target=main, args=(["serve", "--demo", "--port", str(port)],), daemon=True).start()
url = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    try:
        if httpx.get(url + "/health").status_code == 200:
            break
    except httpx.TransportError:
        pass
    time.sleep(0.2)
assert httpx.post(url + "/search", json={"queries": ["who founded the town"]}).status_code == 200
print("\\n".join(sorted(sys.modules)))
"""


def test_serve_imports_no_benchmark_module():
    result = subprocess.run(
        [sys.executable, "-c", SERVE_THEN_LIST_MODULES],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules = set(result.stdout.split())
    assert "retriever_server.search.service" in modules  # it really served
    assert not {m for m in modules if m.startswith("retriever_server.bench")}, sorted(modules)
    assert "aiohttp" not in modules
