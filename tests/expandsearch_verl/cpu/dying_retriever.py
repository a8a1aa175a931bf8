"""A retriever that dies in the middle of a step: it answers `die_after` searches (through the real
demo retriever behind it), then stops listening, like a killed server process; searches already
waiting for an answer get 503s while it goes down, later ones find the port closed."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response


class DyingRetriever:
    def __init__(self, upstream: str, port: int, die_after: int):
        self.upstream, self.port, self.die_after = upstream, port, die_after
        self.answered = 0
        app = FastAPI()
        app.add_api_route("/health", self._health, methods=["GET"])
        app.add_api_route("/search", self._search, methods=["POST"])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DyingRetriever:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the dying retriever did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    async def _health(self) -> Response:
        return Response('{"status": "ok"}', media_type="application/json")

    async def _search(self, request: Request) -> Response:
        if self.answered >= self.die_after:
            return Response('{"detail": "shutting down"}', status_code=503, media_type="application/json")
        self.answered += 1
        if self.answered == self.die_after:
            self.server.should_exit = True  # stop listening once this answer is out
        async with httpx.AsyncClient(timeout=60) as client:
            upstream = await client.post(f"{self.upstream}/search", content=await request.body())
        return Response(upstream.content, status_code=upstream.status_code, media_type="application/json")
