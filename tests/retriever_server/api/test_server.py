"""The real server on loopback: real uvicorn, real faiss, real MiniLM, real BM25."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import httpx
import pytest

from retriever_server.bench.synthetic import query_variants, town_name
from retriever_server.search.loading import load_service


def search_r1_passages(result: list[dict]) -> str:
    """What Search-R1's rollout does with a /retrieve result (generation.py `_passages2string`)."""
    reference = ""
    for idx, doc_item in enumerate(result):
        content = doc_item["document"]["contents"]
        title = content.split("\n")[0]
        text = "\n".join(content.split("\n")[1:])
        reference += f"Doc {idx + 1}(Title: {title}) {text}\n"
    return reference


def test_search_r1_shaped_request(server_url):
    queries = [f"who founded {town_name(5)}", f"who founded {town_name(17)}"]
    response = httpx.post(
        server_url + "/retrieve", json={"queries": queries, "topk": 3, "return_scores": True}
    )
    assert response.status_code == 200
    result = response.json()["result"]
    assert len(result) == 2 and all(len(docs) == 3 for docs in result)
    for docs, i in zip(result, (5, 17), strict=True):
        assert (
            isinstance(docs[0]["score"], float) and docs[0]["score"] >= docs[1]["score"] >= docs[2]["score"]
        )
        assert f'(Title: "{town_name(i)}")' in search_r1_passages(docs).split("\n")[0]
        document = docs[0]["document"]
        assert document["id"] == str(i) and document["title"] == town_name(i)
        assert document["contents"] == f'"{document["title"]}"\n{document["text"]}'


@pytest.mark.parametrize("n_queries", [1, 2, 3])
def test_return_scores_false_is_the_same_documents(server_url, n_queries):
    """Search-R1's server returned garbage (2 queries) or a 500 (other counts) here."""
    queries = [f"who founded {town_name(i)}" for i in range(n_queries)]
    with_scores = httpx.post(
        server_url + "/retrieve", json={"queries": queries, "topk": 4, "return_scores": True}
    )
    bare = httpx.post(server_url + "/retrieve", json={"queries": queries, "topk": 4, "return_scores": False})
    assert bare.status_code == with_scores.status_code == 200
    expected = [[item["document"] for item in docs] for docs in with_scores.json()["result"]]
    assert bare.json()["result"] == expected


def test_topk_default_is_search_r1s(server_url):
    response = httpx.post(server_url + "/retrieve", json={"queries": ["salt"]})
    assert [len(docs) for docs in response.json()["result"]] == [3]


def test_search_fuses_variants_into_unique_documents(server_url):
    queries = query_variants(9)
    body = httpx.post(server_url + "/search", json={"queries": queries, "topk": 5}).json()
    assert set(body) == {
        "documents",
        "per_query",
        "summary",
        "squeezed",
        "squeeze_error",
        "cached",
        "timings_ms",
    }
    assert set(body["timings_ms"]) == {"encode", "search", "squeeze", "total"}
    ids = [doc["id"] for doc in body["documents"]]
    assert len(ids) == len(set(ids)) == len(set().union(*body["per_query"]))
    assert [len(row) for row in body["per_query"]] == [5, 5, 5]
    for doc in body["documents"]:
        hits = [q for q, row in enumerate(body["per_query"]) if doc["id"] in row]
        assert doc["query_hits"] == hits
        expected = sum(1 / (60 + body["per_query"][q].index(doc["id"]) + 1) for q in hits)
        assert doc["score"] == pytest.approx(expected)
    shared = [doc for doc in body["documents"] if len(doc["query_hits"]) >= 2]
    assert shared and shared[0]["id"] == "9"  # the town all three variants are about comes first, once
    assert [doc["score"] for doc in body["documents"]] == sorted(
        (d["score"] for d in body["documents"]), reverse=True
    )
    assert body["summary"] is None and body["squeezed"] is False and body["squeeze_error"] is None


def test_search_max_documents(server_url):
    body = httpx.post(
        server_url + "/search",
        json={
            "queries": query_variants(3),
            "topk": 5,
            "max_documents": 2,
            "squeeze": True,
            "question": "Who founded it?",
        },
    ).json()
    assert len(body["documents"]) == 2
    assert (
        body["squeezed"] is False and body["squeeze_error"] is None and body["summary"] is None
    )  # squeezer none


def test_dense_and_bm25_are_both_served(server_url):
    town = town_name(42)
    for retriever in ("dense", "bm25"):
        response = httpx.post(
            server_url + "/retrieve",
            json={
                "queries": [f"who founded {town}"],
                "topk": 2,
                "return_scores": True,
                "retriever": retriever,
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["result"][0][0]["document"]["id"] == "42"
    bm25 = httpx.post(
        server_url + "/search", json={"queries": [town], "retriever": "bm25", "topk": 100}
    ).json()
    assert [doc["id"] for doc in bm25["documents"]] == ["42"]  # BM25 returns only passages sharing a term
    health = httpx.get(server_url + "/health").json()
    assert (
        health["status"] == "ok"
        and health["retrievers"] == ["dense", "bm25"]
        and health["corpus_size"] == 120
    )


async def test_200_concurrent_requests_give_the_sequential_results(server_url):
    bodies = [{"queries": query_variants(i % 120)[: 1 + i % 3], "topk": 1 + i % 10} for i in range(200)]
    async with httpx.AsyncClient(base_url=server_url, timeout=120) as client:
        sequential = [(await client.post("/search", json=body)).json() for body in bodies]
        concurrent = await asyncio.gather(*(client.post("/search", json=body) for body in bodies))
        metrics = (await client.get("/metrics")).text
    for alone, together in zip(sequential, concurrent, strict=True):
        together = together.json()
        assert together["per_query"] == alone["per_query"]
        assert [d["id"] for d in together["documents"]] == [d["id"] for d in alone["documents"]]
        assert [d["query_hits"] for d in together["documents"]] == [
            d["query_hits"] for d in alone["documents"]
        ]
    batch_sum = next(
        line
        for line in metrics.splitlines()
        if line.startswith('retriever_batch_requests_sum{retriever="dense"}')
    )
    batch_count = next(
        line
        for line in metrics.splitlines()
        if line.startswith('retriever_batch_requests_count{retriever="dense"}')
    )
    assert (
        float(batch_sum.split()[-1]) / float(batch_count.split()[-1]) > 1.5
    )  # requests really were coalesced


def test_metrics_are_prometheus_text(server_url):
    httpx.post(server_url + "/search", json={"queries": ["wool"]})
    text = httpx.get(server_url + "/metrics").text
    assert 'retriever_requests_total{route="/search",status="200"}' in text
    assert "retriever_cache_misses_total" in text and "retriever_ready 1.0" in text


def test_cache_serves_repeated_queries(base_settings, serve_app):
    with serve_app(dataclasses.replace(base_settings, cache_size=100)) as url:
        body = {"queries": query_variants(4), "topk": 5}
        first = httpx.post(url + "/search", json=body).json()
        spaced = {"queries": ["  " + q.replace(" ", "   ") + " " for q in body["queries"]], "topk": 5}
        second = httpx.post(url + "/search", json=spaced).json()
        other_k = httpx.post(url + "/search", json={**body, "topk": 4}).json()
        metrics = httpx.get(url + "/metrics").text
    assert first["cached"] is False and second["cached"] is True and other_k["cached"] is False
    assert second["documents"] == first["documents"] and second["per_query"] == first["per_query"]
    assert "retriever_cache_hits_total 3.0" in metrics


def test_auth_on_and_off(base_settings, serve_app, server_url, monkeypatch):
    assert (
        httpx.post(server_url + "/retrieve", json={"queries": ["salt"]}).status_code == 200
    )  # off by default
    with serve_app(dataclasses.replace(base_settings, auth_token="s3cret")) as url:
        body = {"queries": ["salt"]}
        assert httpx.post(url + "/retrieve", json=body).status_code == 401
        wrong = httpx.post(url + "/search", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert httpx.get(url + "/metrics").status_code == 401
        assert (
            httpx.post(url + "/search", json=body, headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert httpx.get(url + "/health").status_code == 200  # probes need no token
    monkeypatch.setenv("EXPANDSEARCH_RETRIEVER_TOKEN", "from-env")
    with serve_app(base_settings) as url:
        assert httpx.post(url + "/retrieve", json={"queries": ["salt"]}).status_code == 401
        ok = httpx.post(
            url + "/retrieve", json={"queries": ["salt"]}, headers={"Authorization": "Bearer from-env"}
        )
        assert ok.status_code == 200


def test_health_is_503_while_loading(base_settings, serve_app):
    release = threading.Event()

    def slow_loader(settings, metrics):
        release.wait(60)
        return load_service(settings, metrics)

    with serve_app(base_settings, wait_ready=False, loader=slow_loader) as url:
        health = httpx.get(url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        busy = httpx.post(url + "/search", json={"queries": ["salt"]})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        release.set()
        for _ in range(600):
            if httpx.get(url + "/health").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert httpx.post(url + "/search", json={"queries": ["salt"]}).status_code == 200


def test_health_reports_a_failed_load(base_settings, serve_app):
    errors = []
    broken = dataclasses.replace(base_settings, dense_index=base_settings.bm25_index)
    with serve_app(broken, wait_ready=False, on_load_error=errors.append) as url:
        for _ in range(600):
            if errors:
                break
            threading.Event().wait(0.05)
        health = httpx.get(url + "/health")
    assert health.status_code == 503 and health.json()["status"] == "error"
    assert "bm25" in health.json()["error"] and "rebuild" in errors[0]


async def test_graceful_shutdown_finishes_in_flight_requests(base_settings, serve_app):
    import time

    import uvicorn

    from retriever_server.api.app import create_app

    def slow_engine(settings, metrics):
        service = load_service(settings, metrics)
        retriever = service.retrievers["dense"]
        search = retriever.search
        retriever.search = lambda queries, k: (time.sleep(0.5), search(queries, k))[1]
        return service

    with serve_app(base_settings, loader=slow_engine) as url:
        pass  # warm the imports; the server below is driven by hand
    port = int(url.rsplit(":", 1)[1])
    app = create_app(dataclasses.replace(base_settings, port=port), loader=slow_engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while True:
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        in_flight = [
            asyncio.create_task(client.post("/search", json={"queries": [f"q{i}"]})) for i in range(8)
        ]
        await asyncio.sleep(0.2)  # the requests are in the engine queue
        server.should_exit = True
        responses = await asyncio.gather(*in_flight)
    await serving
    assert [r.status_code for r in responses] == [200] * 8
