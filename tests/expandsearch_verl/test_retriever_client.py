"""The shared async client against real loopback servers: payload, retries, failover, breakers."""

from __future__ import annotations

import asyncio
import time

import pytest

from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.retriever_client import RetrieverClient, SearchError, shared_client


def client_for(*urls: str, **settings) -> RetrieverClient:
    settings = {"timeout_s": 2.0, "backoff_s": 0.01, "backoff_max_s": 0.02, **settings}
    return RetrieverClient(AgentLoopConfig.from_kwargs(retriever_urls=list(urls), **settings))


async def test_one_request_carries_every_variant_and_the_settings(fake_retriever):
    client = client_for(fake_retriever.url, topk=2, max_documents=3)
    result = await client.search(["Eiffel Tower", "who built the tower"], question="Q?", squeeze=False)
    assert fake_retriever.requests == [
        {
            "queries": ["Eiffel Tower", "who built the tower"],
            "topk": 2,
            "question": "Q?",
            "squeeze": False,
            "max_documents": 3,
        }
    ]
    assert [doc.id for doc in result.documents] == ["d2", "d5"]
    assert result.summary is None and not result.squeezed
    assert client.stats.requests == 1 and client.stats.retries == 0


async def test_squeezed_response(fake_retriever):
    result = await client_for(fake_retriever.url).search(["Eiffel Tower"], squeeze=True)
    assert result.squeezed and result.summary.startswith("Summary: ")


async def test_transient_503_is_retried(fake_retriever):
    fake_retriever.fail_next = 2
    client = client_for(fake_retriever.url, max_retries=3)
    result = await client.search(["Paris"])
    assert result.documents and len(fake_retriever.requests) == 3 and client.stats.retries == 2


async def test_422_is_not_retried_and_says_why(fake_retriever):
    fake_retriever.mode = "422"
    client = client_for(fake_retriever.url, max_retries=3)
    with pytest.raises(
        SearchError, match=r"refused the request \(HTTP 422\): queries\[0\]: longer than max_query_chars=40"
    ):
        await client.search(["Paris"])
    assert len(fake_retriever.requests) == 1 and client.stats.failed_searches == 1


@pytest.mark.parametrize(
    ("mode", "reason"), [("500", "HTTP 500"), ("garbage", "not a valid /search response")]
)
async def test_server_errors_are_retried_then_reported(fake_retriever, mode: str, reason: str):
    fake_retriever.mode = mode
    client = client_for(fake_retriever.url, max_retries=2, breaker_failures=10)
    with pytest.raises(SearchError, match=reason + r".*attempt 3 of 3"):
        await client.search(["Paris"])
    assert len(fake_retriever.requests) == 3


async def test_slow_server_times_out(fake_retriever):
    fake_retriever.delay_s = 1.0
    client = client_for(fake_retriever.url, timeout_s=0.2, max_retries=1)
    started = time.perf_counter()
    with pytest.raises(SearchError, match=r"did not answer within 0\.2 s"):
        await client.search(["Paris"])
    assert time.perf_counter() - started < 1.5


async def test_slow_answers_are_retried_but_never_open_the_breaker(fake_retriever):
    """A loaded replica is alive: shutting it out would fail every search of the worker for the cooldown."""
    fake_retriever.delay_s = 0.5
    client = client_for(fake_retriever.url, timeout_s=0.1, max_retries=2, breaker_failures=1)
    for _ in range(2):
        with pytest.raises(SearchError, match=r"did not answer within 0\.1 s.*attempt 3 of 3"):
            await client.search(["Paris"])
    (replica,) = client.replicas
    assert client.stats.read_timeouts == 6 and client.stats.breaker_opens == 0
    assert replica.failures == 0 and replica.available(time.monotonic())
    fake_retriever.delay_s = 0.0
    assert (await client.search(["Paris"])).documents


async def test_server_down(dead_url):
    client = client_for(dead_url, max_retries=2)
    with pytest.raises(SearchError, match="could not be reached"):
        await client.search(["Paris"])
    assert client.stats.requests == 3


async def test_failover_to_the_live_replica_without_waiting(fake_retriever, dead_url):
    client = client_for(dead_url, fake_retriever.url, backoff_s=5.0, backoff_max_s=5.0, breaker_failures=2)
    started = time.perf_counter()
    results = await asyncio.gather(*[client.search([f"Paris {n}"]) for n in range(20)])
    assert all(result.documents for result in results)
    assert time.perf_counter() - started < 4.0  # a retry on an untried replica does not back off
    dead = client.replicas[0]
    assert dead.failures >= 2 and dead.open_until > time.monotonic() and client.stats.breaker_opens == 1
    sent = client.stats.requests
    await asyncio.gather(*[client.search(["Lyon"]) for _ in range(10)])
    assert client.stats.requests == sent + 10  # the open breaker keeps the dead replica out


async def test_round_robin_over_live_replicas(start_retriever):
    first, second = start_retriever(), start_retriever()
    client = client_for(first.url, second.url)
    for _ in range(6):
        await client.search(["Paris"])
    assert len(first.requests) == len(second.requests) == 3


async def test_breaker_probes_again_after_the_cooldown(fake_retriever):
    fake_retriever.mode = "500"
    client = client_for(fake_retriever.url, max_retries=0, breaker_failures=2, breaker_cooldown_s=0.3)
    for _ in range(2):
        with pytest.raises(SearchError):
            await client.search(["Paris"])
    with pytest.raises(SearchError, match="circuit breakers are open"):  # fails fast, nothing sent
        await client.search(["Paris"])
    assert len(fake_retriever.requests) == 2
    fake_retriever.mode = "ok"
    await asyncio.sleep(0.35)
    assert (await client.search(["Paris"])).documents  # the probe succeeds and closes the breaker
    assert client.replicas[0].failures == 0


async def test_shared_client_is_one_per_settings_and_loop(fake_retriever):
    config = AgentLoopConfig.from_kwargs(retriever_urls=[fake_retriever.url])
    assert shared_client(config) is shared_client(
        AgentLoopConfig.from_kwargs(retriever_urls=[fake_retriever.url])
    )
    # settings that only shape the observation share the pool; ones that shape requests do not
    assert shared_client(config) is shared_client(
        AgentLoopConfig.from_kwargs(
            retriever_urls=[fake_retriever.url], max_observation_tokens=64, protocol="tool_call"
        )
    )
    assert shared_client(config) is not shared_client(
        AgentLoopConfig.from_kwargs(retriever_urls=[fake_retriever.url], topk=2)
    )
