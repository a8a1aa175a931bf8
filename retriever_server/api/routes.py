"""Thin HTTP handlers: check auth, call the service, map its errors to status codes.

FastAPI validates each body against its model in schemas.py (the limits that are settings against
the answering service's, see `ready_service`); each response is validated against the model the
route declares (`checked`) before it is serialised.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from retriever_server.api.schemas import (
    ERRORS,
    LIMITS,
    SQUEEZE_ERRORS,
    BareResult,
    Health,
    RetrieveRequest,
    RetrieveResponse,
    ScoredResult,
    SearchRequest,
    SearchResponse,
    SqueezeRequest,
    SqueezeResponse,
    checked,
)
from retriever_server.index.corpus import Passage
from retriever_server.search.service import SearchService


def json_response(payload: dict, status_code: int = 200) -> Response:
    """Serialise once with orjson: FastAPI's encoder walks every value in Python first, and `json.dumps`
    takes ~100 µs for a /search response of 30 passages (an eighth of the event loop's work), orjson 5."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


async def require_token(request: Request) -> None:
    """async: FastAPI runs a plain `def` dependency in its thread pool, two thread hops a request."""
    token = request.app.state.token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(
            401,
            "missing or wrong bearer token (Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def ready_service(request: Request) -> SearchService:
    """The loaded service, whose settings the body's limits are then checked against (FastAPI
    resolves this dependency first, in the same task, then validates the body)."""
    service = request.app.state.service
    if service is None:
        raise HTTPException(
            503, "the server is loading its corpus and indexes; retry shortly", headers={"Retry-After": "1"}
        )
    LIMITS.set(service.settings)
    return service


ReadyService = Annotated[SearchService, Depends(ready_service)]
router = APIRouter()
protected = [Depends(require_token)]


@router.post("/retrieve", response_model=RetrieveResponse, responses=ERRORS, dependencies=protected)
async def retrieve(body: RetrieveRequest, service: ReadyService) -> Response:
    """Search-R1 / verl compatible: one top-k list per query, in order."""
    topk = body.topk or service.settings.retrieve_topk
    response = await service.retrieve(body.queries, topk, body.return_scores, body.retriever)
    result = checked(ScoredResult if body.return_scores else BareResult, response["result"])
    return json_response({"result": result})


@router.post("/search", response_model=SearchResponse, responses=ERRORS, dependencies=protected)
async def search(body: SearchRequest, service: ReadyService) -> Response:
    """ExpandSearch: all variants of one turn, fused and de-duplicated (and squeezed when asked)."""
    topk = body.topk or service.settings.search_topk
    response = await service.search(
        body.queries, topk, body.question, body.squeeze, body.max_documents, body.retriever
    )
    return json_response(checked(SearchResponse, response))


@router.post("/squeeze", response_model=SqueezeResponse, responses=SQUEEZE_ERRORS, dependencies=protected)
async def squeeze(body: SqueezeRequest, service: ReadyService) -> Response:
    """Distil given passages for given queries with the configured squeezer (504 slow, 502 failed)."""
    passages = [Passage("", f'"{d.title}"\n{d.text}', d.title, d.text) for d in body.documents]
    try:
        response = await service.squeeze(body.queries, passages, body.question)
    except TimeoutError:
        raise HTTPException(
            504, f"the squeezer took longer than squeeze_timeout_s={service.settings.squeeze_timeout_s}"
        ) from None
    except Exception as exc:  # a backend failure is the backend's, not the request's
        raise HTTPException(
            502, f"squeezer {service.squeezer.name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return json_response(checked(SqueezeResponse, response))


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "loading"}})
async def health(request: Request, response: Response) -> dict:
    """200 once loaded; 503 with status "loading" (or "error" and the reason) before."""
    state = request.app.state
    budgets = {"budgets": {"squeeze_timeout_s": state.settings.squeeze_timeout_s}}
    if state.service is not None:
        return {**state.service.health(), **budgets}
    response.status_code = 503
    if state.load_error is not None:
        return {"status": "error", "error": state.load_error, **budgets}
    return {
        "status": "loading",
        "retrievers": state.settings.retriever,
        "squeezer": state.settings.squeezer,
        **budgets,
    }


@router.get("/metrics", response_class=PlainTextResponse, dependencies=protected)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
