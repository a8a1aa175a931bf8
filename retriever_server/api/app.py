"""`create_app(settings)`: the FastAPI application. Heavy things load in the lifespan, never at import.

Loading (corpus map, encoder, indexes) runs in a background thread after the server starts
listening, so `/health` answers 503 "loading" instead of connection refused, and clients can tell a
loading server from a dead one. On shutdown, in-flight requests finish first (uvicorn's graceful
shutdown), then the batchers drain and the engine thread stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from retriever_server.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from retriever_server.api.routes import json_response, router
from retriever_server.api.schemas import with_limits
from retriever_server.metrics import ServerMetrics
from retriever_server.search.loading import load_service
from retriever_server.search.service import SearchService
from retriever_server.settings import Settings

logger = logging.getLogger(__name__)

Loader = Callable[[Settings, ServerMetrics], SearchService]


def _field(loc) -> str:
    """`queries[2]` from FastAPI's ("body", "queries", 2)."""
    parts = [str(part) for part in loc if part != "body"]
    return "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in parts).lstrip(".") or "body"


async def _validation_error(request: Request, exc: RequestValidationError):
    """422 whose every message starts with the field; the offending input is not echoed back."""
    detail = []
    for error in exc.errors():
        field, msg = _field(error.get("loc", ())), str(error.get("msg", ""))
        if error.get("type") == "json_invalid":
            field, msg = "body", f"invalid JSON at position {error.get('loc', ('', '?'))[-1]}: {msg}"
        if not msg.startswith(field):
            msg = f"{field}: {msg}"
        detail.append(
            {"loc": list(error.get("loc", ())), "msg": msg, "type": error.get("type", "value_error")}
        )
    return json_response({"detail": detail}, 422)


def create_app(
    settings: Settings, loader: Loader = load_service, on_load_error: Callable[[str], None] | None = None
) -> FastAPI:
    """The app; `loader` builds the service in a worker thread once the server listens."""
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async def load():
            try:
                service = await asyncio.to_thread(loader, settings, metrics)
            except Exception as exc:
                app.state.load_error = f"{type(exc).__name__}: {exc}"
                logger.error("loading failed: %s", app.state.load_error)
                if on_load_error is not None:
                    on_load_error(app.state.load_error)
                return
            service.start()
            app.state.service = service
            metrics.ready.set(1)

        loading = asyncio.create_task(load())
        yield
        if not loading.done():
            loading.cancel()
        if app.state.service is not None:
            await app.state.service.stop()

    # strict_content_type=False: a JSON body is parsed even without `Content-Type: application/json` (curl -d)
    app = FastAPI(title="ExpandSearch retriever", version="1", lifespan=lifespan, strict_content_type=False)
    generated_openapi = app.openapi  # FastAPI's, cached

    def openapi() -> dict:
        """The generated schema with the limits in force (max_topk, the retrievers served, ...) declared,
        not only described: the loaded service's settings (the demo adds bm25), else the configured."""
        service = app.state.service
        return with_limits(generated_openapi(), service.settings if service is not None else settings)

    app.openapi = openapi
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = None
    app.state.load_error = None
    app.state.token = settings.resolved_token()
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
