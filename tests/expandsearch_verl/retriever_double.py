"""A stand-in for retriever_server's `POST /search` (docs/design.md) on a loopback uvicorn server.

Word-overlap search over a six-passage corpus, fused best-first, with fault modes for the client
tests (422, 500, slow, unreadable, transient 503s). It speaks the server's contract through the
server's own models: the body is validated as `retriever_server.api.schemas.SearchRequest` (default
settings' limits) and an answer as `SearchResponse` (test_retriever_double.py fuzzes it with the
server's OpenAPI schema). The real server runs in the integration tests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from retriever_server.api.schemas import SearchRequest, SearchResponse
from retriever_server.settings import Settings

CORPUS = [
    {"id": "d1", "title": "Paris", "text": "Paris is the capital and largest city of France, on the Seine."},
    {"id": "d2", "title": "Eiffel Tower", "text": "The Eiffel Tower in Paris was built from 1887 to 1889."},
    {
        "id": "d3",
        "title": "Seine",
        "text": "The Seine is a river that flows through Paris into the English Channel.",
    },
    {
        "id": "d4",
        "title": "Lyon",
        "text": "Lyon is the third largest city of France, where the Rhone meets the Saone.",
    },
    {
        "id": "d5",
        "title": "Gustave Eiffel",
        "text": "Gustave Eiffel was a French engineer whose company built the tower.",
    },
    {
        "id": "d6",
        "title": "Louvre",
        "text": "The Louvre in Paris is the most visited art museum in the world.",
    },
]


class FakeRetriever:
    """docs/design.md's `/search` over `CORPUS` (word overlap, fused best-first), with fault modes.

    mode: "ok", "422", "500", "garbage" (200 with a body that is not a response); `delay_s` sleeps
    before answering; `fail_next` answers 503 to that many requests first.
    """

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reset()
        app = FastAPI()
        app.post("/search", response_model=SearchResponse)(self._search)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def reset(self) -> None:
        self.mode, self.delay_s, self.fail_next, self.squeezer_error = "ok", 0.0, 0, None
        self.summary: str | None = None  # the squeezer's text; None: "Summary: " + the best two passages
        self.requests.clear()
        self.headers.clear()

    def start(self) -> FakeRetriever:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the fake retriever did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _search(self, request: SearchRequest, http: Request):
        self.requests.append(request.model_dump(exclude_unset=True))  # the fields the client sent
        self.headers.append(dict(http.headers))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"detail": "overloaded"}, status_code=503)
        if self.mode == "422":
            return JSONResponse({"detail": "queries[0]: longer than max_query_chars=40"}, status_code=422)
        if self.mode == "500":
            return JSONResponse({"detail": "internal error"}, status_code=500)
        if self.mode == "garbage":
            return PlainTextResponse("<html>proxy error</html>")
        return search_corpus(request, self.squeezer_error, self.summary)


def search_corpus(
    request: SearchRequest, squeezer_error: str | None = None, summary: str | None = None
) -> dict[str, Any]:
    per_query, best = [], {}
    for number, query in enumerate(request.queries):
        words = set(query.lower().split())
        scored = sorted(
            ((len(words & set(f"{d['title']} {d['text']}".lower().split())), d["id"]) for d in CORPUS),
            key=lambda item: (-item[0], item[1]),
        )[: request.topk or Settings().search_topk]
        per_query.append([doc_id for _, doc_id in scored])
        for score, doc_id in scored:
            hit = best.setdefault(doc_id, {"score": 0.0, "query_hits": []})
            hit["score"] = max(hit["score"], float(score))
            hit["query_hits"].append(number)
    ranked = sorted(best, key=lambda doc_id: (-best[doc_id]["score"], doc_id))[: request.max_documents]
    by_id = {d["id"]: d for d in CORPUS}
    documents = [{**by_id[doc_id], **best[doc_id]} for doc_id in ranked]
    squeezed = bool(request.squeeze) and squeezer_error is None
    if summary is None:
        summary = "Summary: " + " ".join(d["text"] for d in documents[:2])
    return {
        "documents": documents,
        "per_query": per_query,
        "summary": summary if squeezed else None,
        "squeezed": squeezed,
        "squeeze_error": squeezer_error,
        "cached": False,
        "timings_ms": {"total": 1.0},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
