"""Checks on the services the rollout calls: every retriever URL of the agent-loop YAML answers
`/health`, accepts a `/search` shaped like the loop's (its `max_queries` variants at its `topk`, with
the bearer token the workers will send), and squeezes through `/squeeze` when the loop asks for it.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlsplit

from expandsearch_verl.doctor.context import Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed, skipped, warned
from expandsearch_verl.retriever_client import needed_timeout_s

TOKEN_ENV = "EXPANDSEARCH_RETRIEVER_TOKEN"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
START_FIX = "start it: bash recipes/launch_retriever.sh (HOST=0.0.0.0 to serve other nodes), or point RETRIEVER_URLS at it"


def check_retriever(ctx: Preflight) -> list[CheckResult]:
    name = "retriever"
    if ctx.skip_network:
        return [skipped(name, "--skip-network")]
    if not ctx.expandsearch_loops:
        return [skipped(name, "no ExpandSearch agent loop configured")]
    import httpx

    loop = next(iter(ctx.expandsearch_loops.values()))
    results = []
    with httpx.Client(timeout=ctx.timeout_s, headers=_auth_headers()) as client:
        for url in ctx.retriever_urls():
            results += _check_one_retriever(client, name, url.rstrip("/"), loop)
    nodes = ctx.select("trainer.nnodes", 1)
    for url in ctx.retriever_urls():
        if nodes > 1 and urlsplit(url).hostname in LOOPBACK_HOSTS:
            results.append(
                warned(
                    name,
                    f"{url} is a loopback address: on the other {nodes - 1} node(s) it points at that node itself",
                    "serve it with HOST=0.0.0.0 and list its routable address in RETRIEVER_URLS, or run one replica per node",
                )
            )
    return results


def check_squeezer(ctx: Preflight) -> list[CheckResult]:
    """POST a one-passage `/squeeze` to every retriever whose loop asks for squeezed observations."""
    name = "squeezer"
    if ctx.skip_network:
        return [skipped(name, "--skip-network")]
    wanted = {
        url: loop.squeeze
        for loop in ctx.expandsearch_loops.values()
        for url in loop.retriever_urls
        if loop.squeeze is not False
    }
    if not wanted:
        detail = "the agent loop does not squeeze: observations are the fused passages (the paper's w/o-squeezer setting)"
        return (
            [passed(name, detail)]
            if ctx.expandsearch_loops
            else [skipped(name, "no ExpandSearch agent loop configured")]
        )
    import httpx

    request = {
        "queries": ["preflight check"],
        "documents": [{"title": "Preflight", "text": "A one-sentence passage to squeeze."}],
    }
    results = []
    with httpx.Client(timeout=max(ctx.timeout_s, 60.0), headers=_auth_headers()) as client:
        for url, squeeze in wanted.items():
            started = time.perf_counter()
            try:
                response = client.post(f"{url.rstrip('/')}/squeeze", json=request)
            except httpx.HTTPError as exc:
                results.append(
                    skipped(name, f"{url}: unreachable ({type(exc).__name__}); see the retriever check")
                )
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            # No squeezer: 200 with backend "none" (the passages come back as they are).
            backend = _json(response).get("backend", "?")
            if response.status_code != 200:
                results.append(
                    failed(
                        name,
                        f"{url}/squeeze answered {response.status_code}: {_detail(response)}",
                        "check the squeezer server (recipes/launch_squeezer.sh) and the retriever's --squeezer-url / --squeezer-model",
                    )
                )
            elif backend != "none":
                results.append(
                    passed(name, f"{url}: squeezer '{backend}' summarised a passage in {elapsed_ms:.0f} ms")
                )
            elif squeeze is None:
                results.append(
                    warned(
                        name,
                        f"{url} has no squeezer; squeeze=null leaves it to the server, so nothing is squeezed",
                        "set squeeze=true or false in the agent-loop YAML to say what the run means",
                    )
                )
            else:
                results.append(
                    failed(
                        name,
                        f"{url} runs --squeezer none, but the agent loop asks for squeeze=true",
                        "start recipes/launch_squeezer.sh and relaunch the retriever with SQUEEZER=openai, or SQUEEZE=false for the no-squeezer ablation",
                    )
                )
    return results


def _check_one_retriever(client: Any, name: str, url: str, loop: Any) -> list[CheckResult]:
    import httpx

    max_queries, topk = loop.max_queries, loop.topk
    try:
        health = client.get(f"{url}/health")
    except httpx.HTTPError as exc:
        return [failed(name, f"{url}: cannot connect ({type(exc).__name__}: {exc})", START_FIX)]
    body = _json(health)
    if health.status_code == 503:
        reason = body.get("error") or body.get("status", "loading")
        return [
            failed(
                name,
                f"{url}/health: 503 ({reason})",
                f"wait until GET {url}/health answers 200 (the index is loading), or read the server's log",
            )
        ]
    if health.status_code != 200:
        return [
            failed(
                name,
                f"{url}/health answered {health.status_code}: {_detail(health)}",
                "is this a retriever_server? " + START_FIX,
            )
        ]
    request = {
        "queries": [f"preflight check {i}" for i in range(max_queries)],
        "topk": topk,
        "squeeze": False,
    }
    started = time.perf_counter()
    search = client.post(f"{url}/search", json=request)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if search.status_code in (401, 403):
        return [
            failed(
                name,
                f"{url}/search refuses the request ({search.status_code}): the server wants a bearer token",
                f"export {TOKEN_ENV}=<the server's --auth-token> where the doctor and every Ray node start",
            )
        ]
    if search.status_code == 422:
        return [
            failed(
                name,
                f"{url}/search refuses the agent loop's shape ({max_queries} queries, topk {topk}): {_detail(search)}",
                "lower topk / max_queries in the agent-loop YAML, or raise the server's --max-topk / --max-queries",
            )
        ]
    if search.status_code != 200:
        return [
            failed(
                name,
                f"{url}/search answered {search.status_code}: {_detail(search)}",
                "read the retriever's log",
            )
        ]
    documents = len(_json(search).get("documents", []))
    corpus = body.get("corpus_size")
    corpus = f"{corpus:,}" if isinstance(corpus, int) else "?"
    return [
        passed(
            name,
            f"{url}: {corpus} passages, retrievers {body.get('retrievers') or body.get('retriever')}, "
            f"squeezer {body.get('squeezer')}; /search of {max_queries} x topk {topk} gave {documents} documents in {elapsed_ms:.0f} ms",
        ),
        *_timeout_covers_budget(name, url, loop.timeout_s, body),
    ]


def _timeout_covers_budget(name: str, url: str, timeout_s: float, health: dict) -> list[CheckResult]:
    """The loop's read timeout outlasts the server's squeeze budget, so its fallback is ever read."""
    needed = needed_timeout_s(health)
    if needed is None or timeout_s >= needed:
        return []
    squeeze = health["budgets"]["squeeze_timeout_s"]
    return [
        warned(
            name,
            f"the agent loop's timeout_s={timeout_s:g} does not cover {url}'s squeeze_timeout_s={squeeze:g} + "
            f"{needed - squeeze:g} s of retrieval: the client raises it to {needed:g} s on its first search",
            f'AGENT_LOOP_SETTINGS="timeout_s={needed:g}" on a recipe; elsewhere '
            f"expandsearch agent-loop-config --set timeout_s={needed:g} (or the YAML's timeout_s)",
        )
    ]


def _auth_headers() -> dict[str, str]:
    token = os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(response: Any) -> str:
    detail = _json(response).get("detail", response.text)
    return " ".join(str(detail).split())[:300]
