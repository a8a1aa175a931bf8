"""The agent loop's client against the real server whose squeezer is slower than its budget.

The server gives up on the squeezer after `squeeze_timeout_s` and answers with the fused passages
(`squeezed: false`); a client whose read timeout equals that budget used to give up just before,
count three timeouts and open the replica's breaker, failing every search of the worker for the
cooldown. The client reads the budget from `/health` and waits for the fallback instead.
"""

from __future__ import annotations

import asyncio
import dataclasses

import httpx

from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.retriever_client import SEARCH_MARGIN_S, RetrieverClient
from retriever_server.synthetic import query_variants

SQUEEZE_TIMEOUT_S = 1.0


async def test_no_search_fails_the_fallback_arrives_and_the_breaker_stays_closed(
    base_settings, chat_server, serve_app
):
    url, chat = chat_server
    chat.script.extend(["slow"] * 64)  # every squeeze takes 3 s, three times the server's budget
    settings = dataclasses.replace(
        base_settings,
        squeezer="openai",
        squeezer_url=url,
        squeezer_retries=0,
        squeezer_request_timeout_s=10,
        squeeze_timeout_s=SQUEEZE_TIMEOUT_S,
    )
    with serve_app(settings) as server:
        health = httpx.get(server + "/health").json()
        assert health["budgets"] == {"squeeze_timeout_s": SQUEEZE_TIMEOUT_S}
        config = AgentLoopConfig.from_kwargs(
            retriever_urls=[server],
            timeout_s=SQUEEZE_TIMEOUT_S,  # the old default's mistake: the client's timeout = the server's budget
            max_retries=2,
            breaker_failures=3,
            backoff_s=0.01,
            backoff_max_s=0.02,
        )
        client = RetrieverClient(config)
        try:
            results = await asyncio.gather(
                *(client.search(query_variants(i)[:3], squeeze=True) for i in range(12))
            )
        finally:
            await client.aclose()
    assert all(result.documents and not result.squeezed for result in results)
    assert all("timed out" in (result.squeeze_error or "") for result in results)
    (replica,) = client.replicas
    assert replica.read_timeout_s == SQUEEZE_TIMEOUT_S + SEARCH_MARGIN_S
    assert client.stats.failed_searches == 0 and client.stats.read_timeouts == 0
    assert client.stats.breaker_opens == 0 and replica.failures == 0
