"""Bare-ASGI plumbing of the scripted servers: read a request body, send a JSON answer."""

from __future__ import annotations

import json
from typing import Any


async def read_body(receive) -> bytes:
    """The whole request body of an ASGI HTTP request, however many messages it came in."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """`body` as a JSON response (bytes are sent as they are: a deliberately malformed answer)."""
    raw_headers = [
        (b"content-type", b"application/json"),
        *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    await send({"type": "http.response.body", "body": payload})
