"""Every invalid input gets a 422 (413 for an oversized body) that names the field and the limit; none a 500."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LONG = "x" * 2049  # max_query_chars = 2048 by default

# (route, body, field named in the message, text the message must contain)
BAD_INPUTS = [
    ("/retrieve", {"queries": []}, "queries", "at least 1 item"),
    ("/search", {"queries": []}, "queries", "at least 1 item"),
    ("/search", {"queries": ["   "]}, "queries[0]", "empty"),
    ("/search", {"queries": ["ok", ""]}, "queries[1]", "empty"),
    ("/retrieve", {"queries": ["q"] * 65}, "queries", "max_queries=64"),
    ("/search", {"queries": [LONG]}, "queries[0]", "max_query_chars=2048"),
    ("/search", {"queries": ["q"], "question": LONG}, "question", "max_query_chars=2048"),
    ("/retrieve", {"queries": ["q"], "topk": 0}, "topk", "greater than or equal to 1"),
    ("/retrieve", {"queries": ["q"], "topk": -3}, "topk", "greater than or equal to 1"),
    ("/search", {"queries": ["q"], "topk": 101}, "topk", "max_topk=100"),
    ("/search", {"queries": ["q"], "max_documents": 0}, "max_documents", "greater than or equal to 1"),
    ("/retrieve", {"queries": "q"}, "queries", "list"),
    ("/retrieve", {"queries": [1, 2]}, "queries[0]", "string"),
    ("/retrieve", {"queries": ["q"], "topk": "3"}, "topk", "integer"),
    ("/retrieve", {"queries": ["q"], "topk": 2.5}, "topk", "integer"),
    ("/retrieve", {"queries": ["q"], "topk": True}, "topk", "integer"),
    ("/retrieve", {"queries": ["q"], "return_scores": "yes"}, "return_scores", "boolean"),
    ("/search", {"queries": ["q"], "squeeze": 1}, "squeeze", "boolean"),
    ("/search", {"queries": ["q"], "retriever": "colbert"}, "retriever", "'dense' or 'bm25'"),
    ("/search", {"topk": 3}, "queries", "required"),
    ("/search", [1, 2], "body", "object"),
    ("/squeeze", {"queries": ["q"], "documents": []}, "documents", "at least 1 item"),
    ("/squeeze", {"queries": ["q"], "documents": [{"title": "t"}]}, "documents[0].text", "required"),
]


@pytest.mark.parametrize(
    ("route", "body", "field", "limit"),
    BAD_INPUTS,
    ids=[f"{r}-{f}-{i}" for i, (r, _, f, _) in enumerate(BAD_INPUTS)],
)
def test_bad_input_is_a_422_naming_field_and_limit(server_url, route, body, field, limit):
    response = httpx.post(server_url + route, json=body)
    assert response.status_code == 422, response.text
    messages = [error["msg"] for error in response.json()["detail"]]
    assert any(msg.startswith(field) and limit in msg for msg in messages), messages


def test_every_problem_is_reported_at_once(server_url):
    response = httpx.post(server_url + "/search", json={"queries": ["", LONG], "topk": 0, "retriever": "x"})
    fields = sorted(error["msg"].split(":")[0] for error in response.json()["detail"])
    assert fields == ["queries[0]", "queries[1]", "retriever", "topk"]


def test_lone_surrogate_and_invalid_json(server_url):
    raw = b'{"queries": ["a\\ud800b"]}'
    response = httpx.post(server_url + "/search", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "Unicode" in response.text
    raw = b'{"queries": ["q"], "documents": [{"text": "ok"}, {"title": "a\\ud800b", "text": "x"}]}'
    response = httpx.post(server_url + "/squeeze", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["msg"].startswith(
        "documents[1].title: not valid"
    )
    broken = httpx.post(
        server_url + "/search", content=b'{"queries": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["msg"].startswith("body: invalid JSON")
    nan = httpx.post(
        server_url + "/search",
        content=b'{"queries": ["q"], "topk": NaN, "max_documents": Infinity}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422 and {e["msg"].split(":")[0] for e in nan.json()["detail"]} == {
        "topk",
        "max_documents",
    }


def test_body_cap(server_url):
    big = json.dumps({"queries": ["q" * 1000] * 1100}).encode()  # > 1 MiB
    response = httpx.post(server_url + "/search", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "max_body_bytes=1048576" in response.text

    def chunks():  # no Content-Length: the cap counts the streamed bytes
        for _ in range(200):
            yield b" " * 8192

    streamed = httpx.post(
        server_url + "/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_unknown_fields_are_ignored_for_old_clients(server_url):
    response = httpx.post(
        server_url + "/retrieve",
        json={"queries": ["salt"], "topk": 2, "return_scores": True, "something_new": {"a": 1}},
    )
    assert response.status_code == 200


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "queries": st.one_of(JSON, st.lists(st.text(max_size=30), max_size=5)),
        "topk": st.one_of(JSON, st.integers(-5, 200)),
        "return_scores": JSON,
        "squeeze": JSON,
        "max_documents": JSON,
        "question": JSON,
        "retriever": st.one_of(JSON, st.sampled_from(["dense", "bm25"])),
    },
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(["/retrieve", "/search", "/squeeze"]), body=st.one_of(FIELDS, JSON))
def test_no_input_produces_a_500(server_url, route, body):
    response = httpx.post(server_url + route, json=body, timeout=60)
    assert response.status_code in (200, 422, 501), (body, response.text)
