"""A small OpenAI-compatible chat-completions server that answers at once, or as scripted.

It stands in for vLLM / SGLang / NIM where they cannot run (no GPU, no network): the `openai`
backend's tests and its client-overhead benchmark. It speaks the real protocol: `POST
/v1/chat/completions` with `model`, `messages` ({role, content}), `max_tokens`, `temperature`,
answered with a `chat.completion` object (`choices[0].message.content`, `finish_reason`, `usage`)
or an OpenAI-style error object; `GET /v1/models` lists the one model it serves. The official
`openai` client is tested against it.

Each request takes the next action from `script` (then "ok" when it is empty):
    ok         200 with a summary naming the queries it was given
    429        rate limited, with `Retry-After: 0`
    500        a server error
    400        a client error (not worth a retry)
    slow       waits `slow_s` seconds, then answers (past a client's timeout)
    malformed  200 with a body that is not JSON
    empty      200 with an empty message

    python -m retriever_server.scripted.chat_server --port 8001     # for the benchmark
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque

from retriever_server.scripted.asgi import read_body, send_json

MODEL = "scripted-squeezer"


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return status, headers or {}, json.dumps(body).encode()


def check_request(body: object) -> str | None:
    """What is wrong with a chat-completions request body, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "'model' is required and must be a string"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
            "tool",
        ):
            return f"messages[{i}]: needs a role of system, user, assistant or tool"
        if not isinstance(message.get("content"), str):
            return f"messages[{i}].content must be a string"
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return "'max_tokens' must be a positive integer"
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 2):
        return "'temperature' must be a number in [0, 2]"
    return None


def summary_of(messages: list[dict]) -> str:
    """A deterministic 'summary' that shows what the squeezer was asked: the query lines of the prompt."""
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    queries = [line[2:] for line in user.splitlines() if line.startswith("- ")]
    return "Summary for: " + " | ".join(queries) if queries else "Summary."


class ScriptedChatServer:
    """An ASGI app; `requests` keeps every request body it accepted, in order."""

    def __init__(self, slow_s: float = 5.0, record: bool = True):
        self.script: deque[str] = deque()
        self.slow_s = slow_s
        self.record = record
        self.requests: list[dict] = []

    async def _chat(self, payload: bytes) -> tuple[int, dict, bytes]:
        try:
            body = json.loads(payload)
        except ValueError:
            return _error(400, "the body is not valid JSON", "invalid_request_error")
        problem = check_request(body)
        if problem:
            return _error(400, problem, "invalid_request_error")
        if self.record:
            self.requests.append(body)
        action = self.script.popleft() if self.script else "ok"
        if action == "429":
            return _error(429, "rate limit reached", "rate_limit_error", {"retry-after": "0"})
        if action in ("500", "400"):
            return _error(
                int(action),
                f"scripted {action}",
                "server_error" if action == "500" else "invalid_request_error",
            )
        if action == "malformed":
            return 200, {}, b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "cut off'
        if action == "slow":
            await asyncio.sleep(self.slow_s)
        content = "" if action == "empty" else summary_of(body["messages"])
        prompt_tokens = sum(len(m["content"]) // 4 for m in body["messages"])
        answer = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content) // 4,
                "total_tokens": prompt_tokens + len(content) // 4,
            },
        }
        return 200, {}, json.dumps(answer).encode()

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http", "serve it with lifespan='off'"
        payload = await read_body(receive)
        path, method = scope["path"].rstrip("/"), scope["method"]
        if method == "POST" and path.endswith("/chat/completions"):
            status, headers, body = await self._chat(payload)
        elif method == "GET" and path.endswith("/models"):
            models = {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}],
            }
            status, headers, body = 200, {}, json.dumps(models).encode()
        else:
            status, headers, body = _error(404, f"no route {method} {scope['path']}", "not_found_error")
        await send_json(send, status, body, headers)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    uvicorn.run(
        ScriptedChatServer(record=False),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
