"""A rule-based policy behind vLLM's OpenAI-compatible completions API, answering at once.

It stands in for `vllm serve CHECKPOINT` where no GPU is: the tests of `expandsearch eval` and its
overhead benchmark. It speaks the protocol `OpenAIPolicy` uses: `POST /v1/completions` with
`model`, `prompt` (token ids or text), `max_tokens`, `stop`, `temperature`, `top_p`, `logprobs`, vLLM's
`return_token_ids` / `include_stop_str_in_output`, answered with a `text_completion` object
(`choices[0].text`, `token_ids`, `finish_reason`, `stop_reason`, `usage`) or an OpenAI error object;
`GET /v1/models` (with vLLM's `root` and `max_model_len`) and `POST /tokenize`. A bad
request gets a 400 with an error object naming the field, as vLLM answers.

The policy is `policy.turn_text` (search the question in two phrasings, then answer with the first
title read). Its turn is cut like an engine cuts it: after the token that completes a stop string,
and at `max_tokens`.

    python -m retriever_server.scripted.policy_server --tokenizer DIR --port 8001
        [--text-only] (no token ids: an older server)   [--die-after N] (exit at the N+1th completion)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from retriever_server.scripted.asgi import read_body, send_json
from retriever_server.scripted.policy import engine_cut, turn_text

MODEL = "scripted-policy"


class ScriptedPolicyServer:
    """An ASGI app; `completions` counts the completion requests it answered."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        root: str | None = None,
        max_model_len: int = 32768,
        text_only: bool = False,
        die_after: int | None = None,
    ):
        self.tokenizer, self.root, self.max_model_len = tokenizer, root, max_model_len
        self.text_only, self.die_after = text_only, die_after
        self.completions = 0

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """A `text_completion` object for a checked request."""
        prompt = body["prompt"]
        context = (
            self.tokenizer.decode(prompt, skip_special_tokens=False) if isinstance(prompt, list) else prompt
        )
        stops = list(body.get("stop") or [])
        ids = self.tokenizer.encode(turn_text(context, stops), add_special_tokens=False)
        ids, stop = engine_cut(self.tokenizer, ids, stops)
        finish = "stop" if stop is not None else "length"
        if len(ids) > body["max_tokens"]:
            ids, stop, finish = ids[: body["max_tokens"]], None, "length"
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        if stop is not None and not body.get("include_stop_str_in_output", False):
            text = text[: text.find(stop)]
        choice: dict[str, Any] = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": stop,
        }
        if body.get("return_token_ids") and not self.text_only:
            choice["token_ids"] = ids
        if body.get("logprobs") is not None:
            choice["logprobs"] = {
                "tokens": [self.tokenizer.decode([i]) for i in ids],
                "token_logprobs": [-0.01 * (k + 1) for k in range(len(ids))],
                "top_logprobs": None,
                "text_offset": None,
            }
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(self.tokenizer.encode(prompt))
        self.completions += 1
        return {
            "id": f"cmpl-{self.completions}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(ids),
                "total_tokens": prompt_tokens + len(ids),
            },
        }

    def check(self, body: Any) -> str | None:
        """What is wrong with a completions request, or None."""
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        if body.get("model") != MODEL:
            return f"The model `{body.get('model')}` does not exist."
        prompt = body.get("prompt")
        vocab = len(self.tokenizer)
        if isinstance(prompt, list):
            if not prompt or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab for i in prompt
            ):
                return f"prompt: token ids must be integers in [0, {vocab})"
        elif not isinstance(prompt, str):
            return "prompt: must be a string or a list of token ids"
        max_tokens = body.get("max_tokens", 16)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return f"max_tokens must be at least 1, got {max_tokens}."
        body["max_tokens"] = max_tokens
        n_prompt = len(prompt) if isinstance(prompt, list) else len(self.tokenizer.encode(prompt))
        if n_prompt + max_tokens > self.max_model_len:
            return (
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{n_prompt + max_tokens} tokens ({n_prompt} in the messages, {max_tokens} in the completion)."
            )
        stop = body.get("stop")
        if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            return "stop must be a list of strings"
        for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 1e-9, 1.0)):
            value = body.get(name, low if name == "temperature" else 1.0)
            if not isinstance(value, int | float) or not low <= value <= high:
                return f"{name} must be in [{low}, {high}], got {value}."
        return None

    def route(self, method: str, path: str, payload: bytes) -> tuple[int, dict[str, Any]]:
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            return 400, _error(400, "the body is not valid JSON")
        if method == "POST" and path == "/v1/completions":
            if self.die_after is not None and self.completions >= self.die_after:
                os._exit(1)  # a crash in the middle of a request: the client sees the connection drop
            problem = self.check(body)
            return (400, _error(400, problem)) if problem else (200, self.complete(body))
        if method == "GET" and path == "/v1/models":
            card = {
                "id": MODEL,
                "object": "model",
                "created": 0,
                "owned_by": "expandsearch",
                "root": self.root,
                "max_model_len": self.max_model_len,
            }
            return 200, {"object": "list", "data": [card]}
        if (
            method == "POST"
            and path == "/tokenize"
            and isinstance(body, dict)
            and isinstance(body.get("prompt"), str)
        ):
            tokens = self.tokenizer.encode(
                body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True))
            )
            return 200, {"tokens": tokens, "count": len(tokens), "max_model_len": self.max_model_len}
        return 404, _error(404, f"no route {method} {path}")

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http", "serve it with lifespan='off'"
        payload = await read_body(receive)
        status, answer = self.route(scope["method"], scope["path"].rstrip("/"), payload)
        await send_json(send, status, answer)


def _error(status: int, message: str) -> dict[str, Any]:
    kind = "BadRequestError" if status == 400 else "NotFoundError"
    return {"object": "error", "message": message, "type": kind, "param": None, "code": status}


def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tokenizer", required=True, help="the tokenizer directory (served as the model's root)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-model-len", type=int, default=32768)
    parser.add_argument("--text-only", action="store_true", help="answer without token ids")
    parser.add_argument("--die-after", type=int, help="exit (as a crash) at the completion after this many")
    args = parser.parse_args(argv)
    app = ScriptedPolicyServer(
        AutoTokenizer.from_pretrained(args.tokenizer),
        root=args.tokenizer,
        max_model_len=args.max_model_len,
        text_only=args.text_only,
        die_after=args.die_after,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
