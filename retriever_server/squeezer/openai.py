"""`openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, NVIDIA NIM).

One pooled `httpx.AsyncClient` per server (keep-alive connections, no handshake per squeeze), at
most `--squeezer-concurrency` requests in flight (the rest wait in the server, not at the remote
end), a timeout per attempt (`--squeezer-request-timeout-s`), and up to `--squeezer-retries`
retries on 429, 5xx, timeouts and connection errors, with exponential backoff and jitter (a 429's
`Retry-After` is honoured, capped). Other 4xx (bad model name, bad key, context too long) and a
malformed answer fail at once: repeating them cannot help. The whole squeeze is still bounded by
the server's `squeeze_timeout_s`, which cancels the request in flight.

The API key is read from the environment variable that `--squeezer-api-key-env` names (for NIM:
`NVIDIA_API_KEY`), never from a flag, so it stays out of process listings and config files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random

import httpx

from retriever_server.squeezer import SqueezeError, SqueezerResources
from retriever_server.squeezer.context import TokenCounter, estimate_tokens, tokenizer_counter
from retriever_server.squeezer.llm import LLMSqueezer
from retriever_server.squeezer.prompt import PromptTemplate

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # the paper's test-time squeezer swap
MAX_BACKOFF_S = 8.0
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A failure worth another attempt; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, reason: str, cause: str, retry_after: float | None = None):
        super().__init__(reason)
        self.cause = cause
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def backoff_delay(attempt: int, base_s: float, retry_after: float | None = None) -> float:
    """Seconds before retry `attempt + 1`: base * 2**attempt with jitter (half to all of it), capped;
    a server's Retry-After wins when it asks for longer (capped as well)."""
    delay = min(MAX_BACKOFF_S, base_s * 2**attempt) * random.uniform(0.5, 1.0)
    return delay if retry_after is None else min(MAX_BACKOFF_S, max(delay, retry_after))


def parse_completion(status: int, payload: bytes) -> str:
    """The assistant message of a 200 chat-completions answer, or a SqueezeError saying what was wrong."""
    try:
        answer = json.loads(payload)
        content = answer["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise SqueezeError(f"malformed chat-completions answer (HTTP {status}): {payload[:200]!r}") from None
    if not isinstance(content, str):
        raise SqueezeError(f"malformed chat-completions answer: message.content is {type(content).__name__}")
    return content


class OpenAIChat:
    """A chat model behind an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 512,
        concurrency: int = 64,
        timeout_s: float = 20.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        count_tokens: TokenCounter = estimate_tokens,
        metrics=None,
    ):
        self.url = url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.retries = retries
        self.backoff_s = backoff_s
        self.count_tokens = count_tokens
        self.metrics = metrics
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.AsyncClient(
            headers=headers, limits=limits, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        )
        self.slots = asyncio.Semaphore(concurrency)

    async def complete(self, messages: list[dict]) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "max_tokens": self.max_tokens,
                "temperature": 0.0,
                "stream": False,
            },
            ensure_ascii=False,
        ).encode()
        attempt = 0
        while True:
            try:
                async with self.slots:
                    return await self._attempt(body)
            except _Retryable as failure:
                if attempt >= self.retries:
                    raise SqueezeError(
                        f"{self.url}: {failure} (gave up after {attempt + 1} attempts)"
                    ) from None
                if self.metrics is not None:
                    self.metrics.squeezer_retries.labels(failure.cause).inc()
                delay = backoff_delay(attempt, self.backoff_s, failure.retry_after)
                attempt += 1
                logger.info("squeezer request failed (%s); retry %d in %.2f s", failure, attempt, delay)
                await asyncio.sleep(delay)

    async def _attempt(self, body: bytes) -> str:
        try:
            response = await self.client.post(f"{self.url}/chat/completions", content=body)
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {self.client.timeout.read} s", "timeout") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}", "connection") from None
        if response.status_code == 200:
            return parse_completion(200, response.content)
        reason = f"HTTP {response.status_code}: {response.text[:200]}"
        if response.status_code in RETRY_STATUS or response.status_code >= 500:
            raise _Retryable(reason, str(response.status_code), _retry_after(response))
        raise SqueezeError(f"{self.url}: {reason}")

    async def aclose(self) -> None:
        await self.client.aclose()


def api_key_from_env(name: str | None) -> str | None:
    """The key in environment variable `name`; a named but unset variable is a start-up error."""
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise ValueError(
            f"squeezer_api_key_env: the environment variable {name} is not set (export {name}=...)"
        )
    return key


def build_openai_squeezer(settings, resources: SqueezerResources) -> LLMSqueezer:
    counter = estimate_tokens
    if settings.squeezer_tokenizer:
        from transformers import AutoTokenizer

        counter = tokenizer_counter(AutoTokenizer.from_pretrained(settings.squeezer_tokenizer))
    chat = OpenAIChat(
        settings.squeezer_url,
        settings.squeezer_model or DEFAULT_MODEL,
        api_key=api_key_from_env(settings.squeezer_api_key_env),
        max_tokens=settings.squeezer_max_tokens,
        concurrency=settings.squeezer_concurrency,
        timeout_s=settings.squeezer_request_timeout_s,
        retries=settings.squeezer_retries,
        backoff_s=settings.squeezer_backoff_s,
        count_tokens=counter,
        metrics=resources.metrics,
    )
    return LLMSqueezer(
        "openai", chat, PromptTemplate.load(settings.squeezer_prompt), settings.squeezer_context_tokens
    )
