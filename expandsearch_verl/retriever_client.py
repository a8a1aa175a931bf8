"""The async HTTP client the agent loop searches through: one per worker process and event loop.

verl builds a new agent-loop object for every trajectory, while the hundreds of trajectories of
one `AgentLoopWorker` share its event loop; so the client lives at module level
(`shared_client`) and keeps one pooled keep-alive `httpx.AsyncClient` for all of them.

A search is one `POST {url}/search` (docs/design.md) carrying every query variant of the turn. Failed
attempts (connection error, timeout, 408, 429, 5xx, an unreadable body) are retried with
exponential backoff and full jitter, moving round-robin to the next replica; a retry on a replica
not yet tried in this call goes out at once. Each replica has a circuit breaker: after
`breaker_failures` consecutive failures it is left out for `breaker_cooldown_s`, then probed
again; while every breaker is open, a search fails at once. A slow answer (a read timeout) is
retried but does not count towards the breaker: the replica is alive, only loaded, and shutting it
out would fail every search of the worker at once. The read timeout covers the server's whole
budget: before its first search a replica's `/health` says its `squeeze_timeout_s`, after which
the server answers with the fused passages (`squeezed: false`); a `timeout_s` shorter than that
plus `SEARCH_MARGIN_S` is raised to it, with one warning. Another 4xx (our request or our
setup: a query over the server's limit, a wrong URL, a missing token) is not retried. When a
search fails for good, `search` raises `SearchError`; the agent loop turns it into an
observation, it never kills a rollout. A server started with `--auth-token` is answered with the
token in `$EXPANDSEARCH_RETRIEVER_TOKEN`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import weakref
from dataclasses import dataclass, field

import httpx
from pydantic import BaseModel, ValidationError

from expandsearch_verl.config import AgentLoopConfig

TOKEN_ENV = "EXPANDSEARCH_RETRIEVER_TOKEN"  # the retriever_server's --auth-token, sent as a bearer token
# Seconds a /search may take beyond the server's squeeze budget: encoding, the index search and the
# wait in the server's queue when hundreds of trajectories search at once.
SEARCH_MARGIN_S = 15.0

logger = logging.getLogger(__name__)
logger.setLevel(os.environ.get("EXPANDSEARCH_LOGGING_LEVEL", "WARNING").upper())


class RetrievedDocument(BaseModel):
    """One fused document of a `/search` response (extra fields are ignored)."""

    id: str
    title: str = ""
    text: str = ""
    score: float = 0.0


class SearchResult(BaseModel):
    """The parts of a `/search` response the agent loop uses."""

    documents: list[RetrievedDocument]
    summary: str | None = None
    squeezed: bool = False
    squeeze_error: str | None = None
    timings_ms: dict[str, float] = {}  # per stage: encode, search, squeeze, total (pydantic copies it)

    @property
    def has_summary(self) -> bool:
        """The squeezer answered with some text: it replaces the documents in the observation."""
        return self.squeezed and bool((self.summary or "").strip())


class SearchError(RuntimeError):
    """Every attempt of one search failed; `reason` is short enough to show the policy."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def needed_timeout_s(health: dict) -> float | None:
    """The read timeout that outlasts the server's whole `/search` budget, from its `/health`; None if
    the server does not say (an older server)."""
    budgets = health.get("budgets") if isinstance(health, dict) else None
    squeeze = budgets.get("squeeze_timeout_s") if isinstance(budgets, dict) else None
    return None if not isinstance(squeeze, int | float) else float(squeeze) + SEARCH_MARGIN_S


@dataclass
class Replica:
    """One retriever URL, its read timeout and its circuit breaker."""

    url: str
    read_timeout_s: float  # the agent loop's timeout_s, raised to the server's budget once known
    failures: int = 0  # consecutive, of the kinds that say the replica is down (not slow answers)
    open_until: float = 0.0  # monotonic time before which the replica is left out
    budget_probe: asyncio.Task | None = None  # GET /health once, shared by concurrent searches

    def available(self, now: float) -> bool:
        return self.open_until <= now


@dataclass
class ClientStats:
    """Process-wide counters (the benchmark and the logs read them)."""

    requests: int = 0
    retries: int = 0
    failed_searches: int = 0
    breaker_opens: int = 0
    read_timeouts: int = 0  # slow answers: retried, never counted towards a breaker
    status_counts: dict[int, int] = field(default_factory=dict)


class _Retryable(Exception):
    def __init__(self, reason: str, *, slow: bool = False):
        super().__init__(reason)
        self.slow = slow  # a read timeout: the replica is alive, so its breaker is left alone


class RetrieverClient:
    """Searches retriever_server replicas with retries, failover and circuit breakers."""

    def __init__(self, config: AgentLoopConfig):
        self.config = config
        self.replicas = [Replica(url.rstrip("/"), config.timeout_s) for url in config.retriever_urls]
        self.stats = ClientStats()
        self._next = 0
        token = os.environ.get(TOKEN_ENV)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s, pool=None),
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
            headers={"Authorization": f"Bearer {token}"} if token else None,
        )

    async def search(
        self, queries: list[str], *, question: str | None = None, squeeze: bool | None = None
    ) -> SearchResult:
        """All `queries` of one turn in one `/search` call; raises `SearchError` if every attempt fails."""
        payload = {
            "queries": queries,
            "topk": self.config.topk,
            "question": question,
            "squeeze": squeeze,
            "max_documents": self.config.max_documents,
        }
        tried: set[str] = set()
        reason = "every retriever replica is failing (their circuit breakers are open)"
        for attempt in range(self.config.max_retries + 1):
            replica = self._pick(tried)
            if replica is None:
                break
            if replica.url in tried:
                await asyncio.sleep(self._backoff(attempt))
            tried.add(replica.url)
            self.stats.requests += 1
            self.stats.retries += bool(attempt)
            try:
                await self._learn_budget(replica)
                result = await self._post(replica, payload)
            except _Retryable as error:
                reason = f"{error} (attempt {attempt + 1} of {self.config.max_retries + 1})"
                if error.slow:
                    self.stats.read_timeouts += 1
                else:
                    self._record_failure(replica)
                continue
            except SearchError as error:
                replica.failures = 0  # the replica answered: it is healthy, the request was not
                self._count_failure(error.reason)
                raise
            replica.failures, replica.open_until = 0, 0.0
            return result
        self._count_failure(reason)
        raise SearchError(reason)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _learn_budget(self, replica: Replica) -> None:
        """Once per replica: raise its read timeout to the server's budget (`/health`) if it is shorter."""
        if replica.budget_probe is None:
            replica.budget_probe = asyncio.ensure_future(self._read_budget(replica))
        try:
            needed = await asyncio.shield(replica.budget_probe)
        except httpx.HTTPError:  # not up yet: the search says what is wrong, the next one asks again
            replica.budget_probe = None
            return
        if needed is not None and replica.read_timeout_s < needed:
            logger.warning(
                "retriever %s may take %g s (its squeeze_timeout_s + %g s); timeout_s=%g would give up "
                "before its fallback arrives: waiting %g s",
                replica.url,
                needed,
                SEARCH_MARGIN_S,
                replica.read_timeout_s,
                needed,
            )
            replica.read_timeout_s = needed

    async def _read_budget(self, replica: Replica) -> float | None:
        response = await self._http.get(f"{replica.url}/health", timeout=self.config.connect_timeout_s + 5)
        try:
            return needed_timeout_s(response.json())
        except ValueError:
            return None

    async def _post(self, replica: Replica, payload: dict) -> SearchResult:
        timeout = httpx.Timeout(replica.read_timeout_s, connect=self.config.connect_timeout_s, pool=None)
        try:
            response = await self._http.post(f"{replica.url}/search", json=payload, timeout=timeout)
        except (httpx.ReadTimeout, httpx.WriteTimeout):
            raise _Retryable(
                f"the retriever did not answer within {replica.read_timeout_s:g} s", slow=True
            ) from None
        except httpx.TimeoutException:
            raise _Retryable(
                f"the retriever could not be reached within {self.config.connect_timeout_s:g} s"
            ) from None
        except httpx.HTTPError as error:
            raise _Retryable(f"the retriever could not be reached ({type(error).__name__})") from None
        status = response.status_code
        self.stats.status_counts[status] = self.stats.status_counts.get(status, 0) + 1
        if 400 <= status < 500 and status not in (408, 429):  # our request or our setup: retrying cannot help
            raise SearchError(f"the retriever refused the request (HTTP {status}): {_detail(response)}")
        if status != 200:
            raise _Retryable(f"the retriever answered HTTP {status}")
        try:
            return SearchResult.model_validate_json(response.content)
        except ValidationError:
            raise _Retryable("the retriever's answer was not a valid /search response") from None

    def _pick(self, tried: set[str]) -> Replica | None:
        """Next replica round-robin whose breaker is closed (or due a probe), preferring one not yet
        tried in this call; None if every breaker is open."""
        now = time.monotonic()
        count = len(self.replicas)
        order = [(self._next + step) % count for step in range(count)]
        candidates = [index for index in order if self.replicas[index].available(now)]
        if not candidates:
            return None
        index = next((index for index in candidates if self.replicas[index].url not in tried), candidates[0])
        self._next = (index + 1) % count
        return self.replicas[index]

    def _record_failure(self, replica: Replica) -> None:
        replica.failures += 1
        if replica.failures >= self.config.breaker_failures:
            was_open = replica.open_until > time.monotonic()
            replica.open_until = time.monotonic() + self.config.breaker_cooldown_s
            if not was_open:
                self.stats.breaker_opens += 1
                logger.warning(
                    "retriever %s failed %d times in a row; leaving it out for %g s",
                    replica.url,
                    replica.failures,
                    self.config.breaker_cooldown_s,
                )

    def _count_failure(self, reason: str) -> None:
        self.stats.failed_searches += 1
        if self.stats.failed_searches == 1:
            logger.warning(
                "a search failed: %s; the rollout goes on, failures are counted in search_failures", reason
            )
        else:
            logger.debug("a search failed: %s", reason)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)


def _detail(response: httpx.Response) -> str:
    """The server's reason, short: FastAPI's `detail` (a string, or a list of `{"msg": ...}`)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):
        detail = "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    return str(detail)[:300]


# One client per (event loop, settings): an httpx pool is bound to the loop that created it.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, RetrieverClient]] = (
    weakref.WeakKeyDictionary()
)
# The knobs that say where and how to reach the retrievers (not what a search asks for).
TRANSPORT_FIELDS = (
    "retriever_urls",
    "timeout_s",
    "connect_timeout_s",
    "max_retries",
    "backoff_s",
    "backoff_max_s",
    "max_connections",
    "breaker_failures",
    "breaker_cooldown_s",
)
_CLIENT_FIELDS = ("topk", "max_documents", *TRANSPORT_FIELDS)


def shared_client(config: AgentLoopConfig) -> RetrieverClient:
    """The process's client for these settings on the running event loop (created on first use)."""
    key = tuple(
        tuple(value) if isinstance(value, list) else value
        for value in (getattr(config, name) for name in _CLIENT_FIELDS)
    )
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(key)
    if client is None:
        client = per_loop[key] = RetrieverClient(config)
    return client


async def close_shared_clients() -> None:
    """Close the clients of the running event loop (a process that evaluates, then goes on)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()
