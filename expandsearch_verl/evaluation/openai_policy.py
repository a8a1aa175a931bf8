"""`LLMServerClient.generate` over an OpenAI-compatible completions server (`vllm serve CHECKPOINT`).

Token ids in, token ids out, as verl's own rollout: each turn POSTs `/v1/completions` with the
trajectory so far as `prompt` (a list of token ids), the loop's `stop` strings and `max_tokens`,
and every sampling param, defaults included (greedy unless told otherwise: the papers evaluate
greedily; a parameter left out would be filled from the checkpoint's `generation_config`). vLLM returns
the sampled ids (`return_token_ids`, vLLM >= 0.10.2), so the model's tokens are never re-encoded.

A server that returns text only (an older vLLM, another engine) gets its text re-encoded with the
local tokenizer, with one warning: a re-encoded turn can differ from the sampled ids where the
tokenization of the text is ambiguous, so the next turn's context may differ slightly from what
the model wrote; the scores rarely change. A stop string such a server strips from the text is put
back (vLLM's `stop_reason`, SGLang's `matched_stop`, else the action whose opening tag is the last
one left open).

Before the run, `served_model` reads `/v1/models` (the model name, its `max_model_len`) and
`check_tokenizer` compares the server's `/tokenize` with the local tokenizer, so a tokenizer that
does not match the checkpoint fails at once instead of producing garbage. One pooled
`httpx.AsyncClient`; connection errors, timeouts, 408, 429 and 5xx are retried with exponential
backoff; another 4xx, or a server still failing after the retries, raises `PolicyError`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

import httpx

from expandsearch_verl.evaluation.policy import PolicyError

logger = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"  # sent as a bearer token when set (vllm serve --api-key)
TOKENIZER_PROBE = "<think>Who wrote Dracula?</think>\n<search>\nBram Stoker\n</search> Été 1897, 東京 ✓"


@dataclass(frozen=True)
class ServedModel:
    id: str  # the name requests use
    root: str | None  # vLLM: the checkpoint it loaded (a local path when served from disk)
    max_model_len: int | None


class OpenAIPolicy:
    """Completions from one OpenAI-compatible server; `generate` may be called concurrently."""

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        tokenizer: Any = None,
        timeout_s: float = 600.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_connections: int = 64,
        seed: int | None = None,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--policy-url: {url!r} must start with http:// or https://")
        root = url.rstrip("/")
        self.root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model, self.tokenizer, self.seed = model, tokenizer, seed
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._reencoding_warned = False
        key = os.environ.get(API_KEY_ENV)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Authorization": f"Bearer {key}"} if key else None,
        )

    async def served_model(self) -> ServedModel:
        """The model to request (`model`, or the server's only one), from `GET /v1/models`."""
        cards = (await self._request("GET", "/v1/models")).get("data")
        if not isinstance(cards, list) or not all(isinstance(card, dict) and "id" in card for card in cards):
            raise PolicyError(f"{self.root}/v1/models is not an OpenAI model list")
        names = [card["id"] for card in cards]
        if self.model is None:
            if len(names) != 1:
                raise PolicyError(
                    f"{self.root} serves {names or 'no models'}: choose one with --policy-model-name"
                )
            self.model = names[0]
        if self.model not in names:
            raise PolicyError(f"{self.root} does not serve {self.model!r}; it serves {names}")
        card = cards[names.index(self.model)]
        length = card.get("max_model_len")
        return ServedModel(self.model, card.get("root"), length if isinstance(length, int) else None)

    async def check_tokenizer(self) -> bool:
        """False if the server has no `/tokenize` (only vLLM and SGLang do); raises on a mismatch."""
        payload = {"model": self.model, "prompt": TOKENIZER_PROBE, "add_special_tokens": False}
        try:
            response = await self._http.post(f"{self.root}/tokenize", json=payload)
        except httpx.HTTPError as error:
            raise PolicyError(
                f"the policy server {self.root} cannot be reached ({type(error).__name__})"
            ) from None
        if response.status_code != 200:
            logger.info(
                "%s/tokenize answered %d: the tokenizer is not checked", self.root, response.status_code
            )
            return False
        served = response.json().get("tokens")
        local = self.tokenizer.encode(TOKENIZER_PROBE, add_special_tokens=False)
        if served != local:
            raise PolicyError(
                f"the server tokenizes differently from the local tokenizer ({served[:12]}... vs {local[:12]}...): "
                f"give --tokenizer the checkpoint the server serves ({self.model})"
            )
        return True

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> Any:
        """One turn: `prompt_ids` continued until a stop string, EOS or `max_tokens`."""
        from verl.workers.rollout.replica import TokenOutput

        wants_logprobs = bool(sampling_params.get("logprobs"))
        body = await self._request("POST", "/v1/completions", self._payload(prompt_ids, sampling_params))
        try:
            choice = body["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise PolicyError(f"the policy server's answer has no choices[0]: {str(body)[:200]}") from None
        token_ids = choice.get("token_ids")
        if token_ids is None:
            token_ids = self._reencode(choice, list(sampling_params.get("stop") or []))
        log_probs = None
        if wants_logprobs:
            log_probs = (choice.get("logprobs") or {}).get("token_logprobs")
            if not isinstance(log_probs, list) or len(log_probs) != len(token_ids):
                raise PolicyError(
                    f"the policy server returned no log-prob per token for {len(token_ids)} tokens"
                )
        return TokenOutput(token_ids=list(token_ids), log_probs=log_probs, stop_reason="completed")

    async def aclose(self) -> None:
        await self._http.aclose()

    def _payload(self, prompt_ids: list[int], sampling_params: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": list(prompt_ids),
            "max_tokens": int(sampling_params["max_tokens"]),
            # Every sampling parameter, defaults included: vLLM fills a missing one from the checkpoint's
            # generation_config (Qwen2.5-Instruct ships repetition_penalty 1.05, top_k 20), so the
            # eval would not decode as verl's validation does (verl overrides that config).
            **sampling_fields(sampling_params),
            "stop": list(sampling_params.get("stop") or []),
            "include_stop_str_in_output": True,  # vLLM: the text ends like the token ids do
            "return_token_ids": True,  # vLLM: the sampled ids, so nothing is re-encoded
            "skip_special_tokens": False,
        }
        if self.seed is not None:
            payload["seed"] = self.seed
        if sampling_params.get("logprobs"):
            payload["logprobs"] = 1
        return payload

    def _reencode(self, choice: dict[str, Any], stops: list[str]) -> list[int]:
        """Token ids for a text-only answer: its text, with a stripped stop string put back."""
        if not self._reencoding_warned:
            self._reencoding_warned = True
            logger.warning(
                "%s returns text without token ids: re-encoding it locally (use vLLM >= 0.10.2 for the "
                "sampled ids; a re-encoded turn may tokenize differently from what the model sampled)",
                self.root,
            )
        text = choice.get("text") or ""
        if choice.get("finish_reason") == "stop" and not any(text.endswith(stop) for stop in stops):
            matched = choice.get("stop_reason", choice.get("matched_stop"))
            if not isinstance(matched, str):
                matched = _open_action(text, stops)
            text += matched or ""
        return self.tokenizer.encode(text, add_special_tokens=False)

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON answer, after retrying what a retry can fix."""
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(30.0, self.backoff_s * 2 ** (attempt - 1)))
            try:
                response = await self._http.request(method, f"{self.root}{path}", json=payload)
            except httpx.TimeoutException:
                reason = f"no answer within {self.timeout_s:g} s"
                continue
            except httpx.HTTPError as error:
                reason = f"it cannot be reached ({type(error).__name__})"
                continue
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    raise PolicyError(
                        f"{self.root}{path} answered 200 with a body that is not JSON"
                    ) from None
            if status in (408, 429) or status >= 500:
                reason = f"HTTP {status}: {_detail(response)}"
                continue
            raise PolicyError(f"the policy server refused {path} (HTTP {status}): {_detail(response)}")
        raise PolicyError(
            f"the policy server {self.root} failed {self.retries + 1} time(s) on {path}: {reason}"
        )


def sampling_fields(sampling_params: dict[str, Any]) -> dict[str, float | int]:
    """The request's sampling fields, each one explicit (top_k -1 = every token, as verl's val_kwargs)."""
    top_k = int(sampling_params.get("top_k", -1))
    return {
        "temperature": float(sampling_params.get("temperature", 0.0)),
        "top_p": float(sampling_params.get("top_p", 1.0)),
        "top_k": top_k if top_k > 0 else -1,
        "min_p": float(sampling_params.get("min_p", 0.0)),
        "repetition_penalty": float(sampling_params.get("repetition_penalty", 1.0)),
        "presence_penalty": float(sampling_params.get("presence_penalty", 0.0)),
        "frequency_penalty": float(sampling_params.get("frequency_penalty", 0.0)),
    }


def _open_action(text: str, stops: list[str]) -> str | None:
    """The closing tag among `stops` whose opening tag is the last one left open in `text`."""
    best, position = None, -1
    for stop in stops:
        opening = "<" + stop[2:] if stop.startswith("</") else None
        if opening is None:
            continue
        start = text.rfind(opening)
        if start > position and text.rfind(stop) < start:
            best, position = stop, start
    return best


def _detail(response: httpx.Response) -> str:
    """The server's reason: OpenAI's `error.message`, vLLM's `message`, FastAPI's `detail`."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
        for key in ("message", "detail"):
            if key in body:
                return str(body[key])[:300]
    return str(body)[:300]
