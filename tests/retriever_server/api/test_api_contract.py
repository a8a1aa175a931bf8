"""The OpenAPI schema is the contract: a schema fuzzer (schemathesis) against the real server on loopback.

For every operation the server publishes at `/openapi.json`, schemathesis generates requests from
the schema itself, sends them to the real server (MiniLM + BM25 over the synthetic corpus) and
checks each response: never a 5xx, a status code and content type the schema declares, a body that
validates against the declared response model. Schema-valid requests must be accepted (counted,
not timed), schema-invalid ones refused with a 4xx. Generation is derandomized and bounded in
examples, so a run is the same every time and takes seconds.

    pytest tests/retriever_server/api/test_api_contract.py -q
"""

from __future__ import annotations

import re
import sys
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from retriever_server.api.schemas import NOT_BLANK

EXAMPLES = 60  # per operation and mode: ~400 requests in all, ~15 s on 2 cores
ACCEPTED = 0.95  # schema-valid requests the server must accept (observed: all of them)
# What refuses a schema-invalid request: schemathesis's list, plus 413, the server's answer to a body
# over max_body_bytes before it is parsed (a negative body of ~40 oversized items now and then passes
# 1 MiB; the schema declares 413 on every POST). 5xx is not in it: never a server error.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(operation, base_url: str, mode: GenerationMode) -> Counter:
    """Status codes of EXAMPLES generated requests; raises schemathesis's report on a failed check."""
    statuses: Counter = Counter()
    checks = RESPONSE_CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(base_url=base_url, timeout=60)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks)

    run()
    return statuses


@pytest.fixture(scope="module")
def api(server_url):
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    )
    return schemathesis.openapi.from_url(server_url + "/openapi.json", config=config)


def operations(api) -> list:
    return [result.ok() for result in api.get_all_operations()]


def test_every_operation_is_published(api):
    labels = {operation.label for operation in operations(api)}
    assert labels == {"POST /retrieve", "POST /search", "POST /squeeze", "GET /health", "GET /metrics"}


def test_schema_valid_requests_are_accepted_and_answered_as_declared(api, server_url):
    for operation in operations(api):
        statuses = fuzz(operation, server_url, GenerationMode.POSITIVE)
        accepted = sum(n for status, n in statuses.items() if 200 <= status < 300) / statuses.total()
        assert accepted >= ACCEPTED, (operation.label, dict(statuses))


def test_schema_invalid_requests_are_refused_never_a_500(api, server_url):
    for operation in operations(api):
        if operation.method.upper() == "POST":  # the GETs take no input to get wrong
            statuses = fuzz(operation, server_url, GenerationMode.NEGATIVE)
            assert all(400 <= status < 500 for status in statuses), (operation.label, dict(statuses))


def test_the_served_schema_declares_this_servers_limits(server_url):
    schemas = httpx.get(server_url + "/openapi.json").json()["components"]["schemas"]
    search = schemas["SearchRequest"]["properties"]
    assert search["queries"]["minItems"] == 1 and search["queries"]["maxItems"] == 64  # max_queries
    assert search["queries"]["items"]["maxLength"] == 2048  # max_query_chars
    topk = search["topk"]["anyOf"][0]
    assert (topk["type"], topk["minimum"], topk["maximum"]) == ("integer", 1, 100)  # max_topk
    assert search["retriever"]["anyOf"][0]["enum"] == ["dense", "bm25"]
    assert schemas["SqueezeRequest"]["properties"]["documents"]["maxItems"] == 64 * 100
    assert "x-setting-limit" not in str(schemas)


def test_the_blank_pattern_is_what_the_server_calls_blank():
    """JSON Schema patterns are ECMA-262, whose `\\S` differs from Python's: the class is spelled out."""
    for code in range(sys.maxunicode + 1):
        if not 0xD800 <= code < 0xE000:
            assert bool(re.search(NOT_BLANK, chr(code))) == bool(chr(code).strip()), hex(code)
