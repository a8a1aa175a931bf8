"""The retriever double honours the server's contract: fuzzed with the server's own OpenAPI schema.

The schema is the one a default `retriever_server` publishes (`create_app(Settings()).openapi()`);
schemathesis generates schema-valid `/search` bodies from it, and every answer of the double must
be a 200 that validates against the declared `SearchResponse` (and a schema-invalid body a 422).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from retriever_server.api.app import create_app
from retriever_server.settings import Settings

SEARCH = schemathesis.openapi.from_dict(create_app(Settings()).openapi())["/search"]["POST"]
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def test_schema_valid_searches_get_a_declared_answer(fake_retriever):
    @FUZZ
    @given(case=SEARCH.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def search(case):
        response = case.call(base_url=fake_retriever.url, timeout=10)
        assert response.status_code == 200, response.text
        case.validate_response(response, checks=CHECKS)

    search()
    assert len(fake_retriever.requests) >= 40


def test_schema_invalid_searches_are_refused(fake_retriever):
    @FUZZ
    @given(case=SEARCH.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def search(case):
        response = case.call(base_url=fake_retriever.url, timeout=10)
        assert 400 <= response.status_code < 500, (case.body, response.text)

    search()
