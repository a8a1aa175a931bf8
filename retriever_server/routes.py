"""Thin HTTP handlers: check auth and limits, call the service, map its errors to status codes."""

from __future__ import annotations

import hmac
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from retriever_server.corpus import Passage
from retriever_server.schemas import (
    Health,
    RetrieveRequest,
    RetrieveResponse,
    SearchRequest,
    SearchResponse,
    SqueezeRequest,
    SqueezeResponse,
    limit_errors,
)
from retriever_server.service import SearchService


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
    service = request.app.state.service
    if service is None:
        raise HTTPException(
            503, "the server is loading its corpus and indexes; retry shortly", headers={"Retry-After": "1"}
        )
    return service


def check_limits(body, service: SearchService) -> None:
    errors = limit_errors(body, service.settings)
    name = getattr(body, "retriever", None)
    if name is not None and name not in service.retrievers:
        errors.append(
            {
                "loc": ["body", "retriever"],
                "type": "value_error",
                "msg": f"retriever: {name!r} is not served; this server serves {list(service.retrievers)}",
            }
        )
    if errors:
        raise RequestValidationError(errors)


ReadyService = Annotated[SearchService, Depends(ready_service)]
router = APIRouter()
protected = [Depends(require_token)]


@router.post("/retrieve", response_model=RetrieveResponse, dependencies=protected)
async def retrieve(body: RetrieveRequest, service: ReadyService) -> Response:
    """Search-R1 / verl compatible: one top-k list per query, in order."""
    check_limits(body, service)
    topk = body.topk or service.settings.retrieve_topk
    return json_response(await service.retrieve(body.queries, topk, body.return_scores, body.retriever))


@router.post("/search", response_model=SearchResponse, dependencies=protected)
async def search(body: SearchRequest, service: ReadyService) -> Response:
    """ExpandSearch: all variants of one turn, fused and de-duplicated (and squeezed when asked)."""
    check_limits(body, service)
    topk = body.topk or service.settings.search_topk
    return json_response(
        await service.search(
            body.queries, topk, body.question, body.squeeze, body.max_documents, body.retriever
        )
    )


@router.post("/squeeze", response_model=SqueezeResponse, dependencies=protected)
async def squeeze(body: SqueezeRequest, service: ReadyService) -> Response:
    """Distil given passages for given queries with the configured squeezer (504 slow, 502 failed)."""
    check_limits(body, service)
    passages = [Passage("", f'"{d.title}"\n{d.text}', d.title, d.text) for d in body.documents]
    try:
        return json_response(await service.squeeze(body.queries, passages, body.question))
    except TimeoutError:
        raise HTTPException(
            504, f"the squeezer took longer than squeeze_timeout_s={service.settings.squeeze_timeout_s}"
        ) from None
    except Exception as exc:  # a backend failure is the backend's, not the request's
        raise HTTPException(
            502, f"squeezer {service.squeezer.name!r} failed: {type(exc).__name__}: {exc}"
        ) from None


@router.get("/health", response_model=Health)
async def health(request: Request) -> Response:
    """200 once loaded; 503 with status "loading" (or "error" and the reason) before."""
    state = request.app.state
    budgets = {"budgets": {"squeeze_timeout_s": state.settings.squeeze_timeout_s}}
    if state.service is not None:
        return json_response({**state.service.health(), **budgets})
    if state.load_error is not None:
        return json_response({"status": "error", "error": state.load_error}, 503)
    return json_response(
        {
            "status": "loading",
            "retrievers": state.settings.retriever,
            "squeezer": state.settings.squeezer,
            **budgets,
        },
        503,
    )


@router.get("/metrics", dependencies=protected)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
