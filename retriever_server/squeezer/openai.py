"""`openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, NVIDIA NIM).

The official `openai` client (`AsyncOpenAI`) talks to it: one pooled connection pool per server
(keep-alive, at most `--squeezer-concurrency` requests in flight; the rest wait for a connection in
the server, not at the remote end), a timeout per attempt (`--squeezer-request-timeout-s`), and up
to `--squeezer-retries` retries on 408, 409, 429, 5xx, timeouts and connection errors, with the
client's exponential backoff and jitter (0.5 s doubling to 8 s) and a server's `Retry-After`
honoured. Other 4xx (bad model name, bad key, context too long) and a malformed answer fail at
once: repeating them cannot help. The whole squeeze is still bounded by the server's
`squeeze_timeout_s`, which cancels the request in flight. Each retry is counted by cause on
`/metrics` (`retriever_squeezer_retries_total`), seen from the connection pool's side.

The API key is read from the environment variable that `--squeezer-api-key-env` names (for NIM:
`NVIDIA_API_KEY`), never from a flag, so it stays out of process listings and config files; without
one the placeholder `EMPTY` is sent (never `OPENAI_API_KEY`, which belongs to another server).

The client replaced a hand-written httpx one; `python -m retriever_server.squeezer.bench --only
openai` measures both side by side (docs/retriever.md, "squeezer").
"""

from __future__ import annotations

import json
import logging
import os

import httpx2
import openai

from retriever_server.squeezer import SqueezeError, SqueezerResources
from retriever_server.squeezer.context import TokenCounter, estimate_tokens, tokenizer_counter
from retriever_server.squeezer.llm import LLMSqueezer
from retriever_server.squeezer.prompt import PromptTemplate

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # the paper's test-time squeezer swap
RETRY_COUNT_HEADER = "x-stainless-retry-count"  # the openai client numbers its attempts 0, 1, ...


class RetryCounter(httpx2.AsyncHTTPTransport):
    """The client's connection pool, counting each failed attempt that the client will retry, by cause
    (HTTP status, timeout, connection): the client retries an attempt while it has retries left."""

    def __init__(self, metrics, retries: int, **kwargs):
        super().__init__(**kwargs)
        self.metrics = metrics
        self.retries = retries

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx2.TimeoutException:
            self._count(request, "timeout")
            raise
        except httpx2.TransportError:
            self._count(request, "connection")
            raise
        if response.status_code in (408, 409, 429) or response.status_code >= 500:
            self._count(request, str(response.status_code))
        return response

    def _count(self, request: httpx2.Request, cause: str) -> None:
        if self.metrics is not None and int(request.headers.get(RETRY_COUNT_HEADER, "0")) < self.retries:
            self.metrics.squeezer_retries.labels(cause).inc()


def _attempts(error: openai.APIError) -> int:
    return int(error.request.headers.get(RETRY_COUNT_HEADER, "0")) + 1


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
        count_tokens: TokenCounter = estimate_tokens,
        metrics=None,
    ):
        self.url = url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.count_tokens = count_tokens
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = openai.AsyncOpenAI(
            base_url=self.url,
            # no key: vLLM's placeholder for a server without --api-key (None would send $OPENAI_API_KEY)
            api_key=api_key or "EMPTY",
            max_retries=retries,
            # pool=None: a request waits for a free connection (the concurrency cap) without a clock
            timeout=openai.Timeout(timeout_s, connect=min(timeout_s, 10.0), pool=None),
            http_client=openai.DefaultAsyncHttpxClient(
                transport=RetryCounter(metrics, retries, limits=limits)
            ),
        )

    async def complete(self, messages: list[dict]) -> str:
        try:
            completion = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=self.max_tokens,
                temperature=0.0,
                stream=False,
            )
        except openai.APITimeoutError as error:
            raise SqueezeError(
                f"{self.url}: no answer within {self.client.timeout.read} s "
                f"(gave up after {_attempts(error)} attempts)"
            ) from None
        except openai.APIConnectionError as error:
            raise SqueezeError(
                f"{self.url}: connection failed: {error.__cause__ or error} "
                f"(gave up after {_attempts(error)} attempts)"
            ) from None
        except openai.APIStatusError as error:
            raise SqueezeError(
                f"{self.url}: HTTP {error.status_code}: {error.response.text[:200]} "
                f"(gave up after {_attempts(error)} attempts)"
            ) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError) as error:
            raise SqueezeError(f"malformed chat-completions answer: {error}") from None
        try:
            content = completion.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise SqueezeError(f"malformed chat-completions answer: {str(completion)[:200]!r}") from None
        if not isinstance(content, str):
            raise SqueezeError(
                f"malformed chat-completions answer: message.content is {type(content).__name__}"
            )
        return content

    async def aclose(self) -> None:
        await self.client.close()


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
        count_tokens=counter,
        metrics=resources.metrics,
    )
    return LLMSqueezer(
        "openai", chat, PromptTemplate.load(settings.squeezer_prompt), settings.squeezer_context_tokens
    )
