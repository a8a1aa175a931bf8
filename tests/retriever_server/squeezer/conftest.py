"""Fixtures for the squeezer tests: a scripted OpenAI-compatible server on loopback, passages."""

from __future__ import annotations

import threading
import time

import pytest

from retriever_server.index.corpus import Passage
from retriever_server.process import free_port
from retriever_server.scripted.chat_server import ScriptedChatServer


@pytest.fixture
def chat_server():
    """(base URL ending in /v1, the ScriptedChatServer app) served by real uvicorn in a thread."""
    import uvicorn

    app = ScriptedChatServer(slow_s=3.0)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the scripted chat server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def passage(i: int, title: str | None = None, text: str | None = None) -> Passage:
    title = title or f"Title {i}"
    text = text or f"Passage {i} says something about topic {i}."
    return Passage(str(i), f'"{title}"\n{text}', title, text)


@pytest.fixture
def make_passage():
    return passage
