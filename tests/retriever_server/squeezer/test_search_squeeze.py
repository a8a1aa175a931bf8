"""Squeezing inside the real server: /search on and off, every fallback path, /squeeze, each backend."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from retriever_server.bench.synthetic import query_variants
from retriever_server.search.loading import load_service


def _metric(url: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}}" if labels else name
    lines = [line for line in httpx.get(url + "/metrics").text.splitlines() if line.startswith(prefix + " ")]
    return float(lines[0].split()[-1]) if lines else 0.0


def _search(url: str, **body) -> dict:
    response = httpx.post(url + "/search", json={"queries": query_variants(7), "topk": 5, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def openai_settings(base_settings, chat_server):
    url, _ = chat_server
    return dataclasses.replace(
        base_settings,
        squeezer="openai",
        squeezer_url=url,
        squeezer_retries=0,
        squeezer_request_timeout_s=10,
        squeeze_timeout_s=1.0,
    )


def test_search_with_squeezing_on_and_off(openai_settings, chat_server, serve_app):
    _, chat = chat_server
    with serve_app(openai_settings) as url:
        assert httpx.get(url + "/health").json()["squeezer"] == "openai"
        off = _search(url)
        assert off["summary"] is None and off["squeezed"] is False and off["squeeze_error"] is None
        assert chat.requests == []  # squeezing is off by default
        on = _search(url, squeeze=True, question="Who founded it?")
        assert on["squeezed"] is True and on["squeeze_error"] is None and on["timings_ms"]["squeeze"] > 0
        assert on["summary"] == "Summary for: " + " | ".join(query_variants(7))
        assert on["documents"] == off["documents"]  # the passages come back too
        user = chat.requests[0]["messages"][1]["content"]
        assert "Who founded it?" in user and on["documents"][0]["text"] in user
        again = _search(url, squeeze=True, question="Who founded it?")
        assert again["summary"] == on["summary"] and len(chat.requests) == 1  # a cache hit
        assert _metric(url, "retriever_squeeze_cache_total", 'result="hit"') == 1


@pytest.mark.parametrize(
    ("action", "reason", "says"),
    [
        ("500", "error", "HTTP 500"),
        ("malformed", "error", "malformed"),
        ("empty", "error", "empty summary"),
        ("slow", "timeout", "timed out after 1.0 s"),
        ("400", "error", "HTTP 400"),
    ],
)
def test_a_failing_squeezer_degrades_to_the_passages(
    openai_settings, chat_server, serve_app, action, reason, says
):
    _, chat = chat_server
    chat.script.append(action)
    with serve_app(openai_settings) as url:
        body = _search(url, squeeze=True)
        assert body["squeezed"] is False and body["summary"] is None and says in body["squeeze_error"]
        assert len(body["documents"]) > 0 and body["per_query"]
        assert _metric(url, "retriever_squeeze_failures_total", f'reason="{reason}"') == 1
        assert (
            _search(url, squeeze=True)["squeezed"] is True
        )  # the failure was not cached; the next one works


def test_an_unreachable_squeezer_and_an_exploding_one_never_make_a_500(base_settings, serve_app, free_port):
    unreachable = dataclasses.replace(
        base_settings,
        squeezer="openai",
        squeezer_url=f"http://127.0.0.1:{free_port}/v1",
        squeezer_retries=1,
    )
    with serve_app(unreachable) as url:
        body = _search(url, squeeze=True)
        assert body["squeezed"] is False and "connection failed" in body["squeeze_error"]

    class Exploding:
        name, model = "openai", "boom"

        async def squeeze(self, queries, documents, question):
            raise KeyError("a bug in a backend")

        async def aclose(self):
            return None

    def exploding_loader(settings, metrics):
        service = load_service(settings, metrics)
        service.squeezer = Exploding()
        return service

    with serve_app(base_settings, loader=exploding_loader) as url:
        body = _search(url, squeeze=True)
        assert body["squeezed"] is False and "KeyError" in body["squeeze_error"]
        assert (
            httpx.post(url + "/squeeze", json={"queries": ["q"], "documents": [{"text": "x"}]}).status_code
            == 502
        )


def test_squeeze_endpoint(openai_settings, chat_server, serve_app):
    _, chat = chat_server
    documents = [
        {"title": "Rome", "text": "Rome was founded by Romulus."},
        {"title": "Rome", "text": "Rome was founded by Romulus."},
    ]
    with serve_app(openai_settings) as url:
        response = httpx.post(
            url + "/squeeze", json={"queries": ["who founded rome"], "documents": documents}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["summary"] == "Summary for: who founded rome" and body["backend"] == "openai"
        assert chat.requests[0]["messages"][1]["content"].count("Romulus") == 1  # de-duplicated
        chat.script.extend(["500", "slow"])
        failed = httpx.post(url + "/squeeze", json={"queries": ["q2"], "documents": documents})
        assert failed.status_code == 502 and "HTTP 500" in failed.json()["detail"]
        slow = httpx.post(url + "/squeeze", json={"queries": ["q3"], "documents": documents}, timeout=30)
        assert slow.status_code == 504 and "squeeze_timeout_s=1.0" in slow.json()["detail"]


def test_squeezer_none_returns_the_fused_documents(base_settings, serve_app):
    with serve_app(base_settings) as url:
        body = _search(url, squeeze=True)
        assert body["squeezed"] is False and body["summary"] is None and body["squeeze_error"] is None
        assert _metric(url, "retriever_squeeze_failures_total", 'reason="error"') == 0  # not a failure
        docs = [{"title": d["title"], "text": d["text"]} for d in body["documents"][:2]]
        squeezed = httpx.post(url + "/squeeze", json={"queries": ["q"], "documents": docs + docs[:1]}).json()
        assert squeezed["backend"] == "none"
        assert (
            squeezed["summary"]
            == f"[1] {docs[0]['title']}\n{docs[0]['text']}\n\n[2] {docs[1]['title']}\n{docs[1]['text']}"
        )


def test_extractive_squeezes_with_the_servers_encoder(base_settings, serve_app):
    with serve_app(dataclasses.replace(base_settings, squeezer="extractive", squeezer_max_tokens=64)) as url:
        body = _search(url, squeeze=True)
        assert body["squeezed"] is True, body["squeeze_error"]
        assert body["documents"][0]["title"] + ": " in body["summary"]


def test_hf_squeezes_with_smollm2(base_settings, serve_app, smollm2_dir):
    settings = dataclasses.replace(
        base_settings,
        squeezer="hf",
        squeezer_model=str(smollm2_dir),
        squeezer_max_tokens=12,
        squeezer_context_tokens=300,
        squeeze_timeout_s=120,
    )
    with serve_app(settings) as url:
        body = _search(url, squeeze=True, question="Who founded it?")
        assert body["squeezed"] is True and body["summary"], body["squeeze_error"]
        assert _metric(url, "retriever_squeezer_batch_requests_count") == 1


def test_a_broken_squeezer_config_fails_the_start_with_the_reason(base_settings, serve_app, tmp_path):
    import threading

    bad_prompt = tmp_path / "prompt.yaml"
    bad_prompt.write_text("version: 1\nsystem: s\nuser: '{{ nope }}'\n")
    errors = []
    settings = dataclasses.replace(base_settings, squeezer="openai", squeezer_prompt=str(bad_prompt))
    with serve_app(settings, wait_ready=False, on_load_error=errors.append) as url:
        for _ in range(600):
            if errors:
                break
            threading.Event().wait(0.05)
        health = httpx.get(url + "/health").json()
    assert health["status"] == "error" and "squeezer_prompt" in health["error"] and "nope" in errors[0]
