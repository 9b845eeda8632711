"""The submit API: `create_app(settings, dispatcher)` builds the FastAPI application.

Routes are thin: authenticate, validate, call the pipeline, translate errors. Every
error body is {"error": {"message": ..., "field": ...}} with the status the error tree
gives it (`api.errors`). Nothing in api/ imports this module.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import anyio
from anyio.lowlevel import RunVar
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics
from api.audit import audit_request
from api.context import Dispatcher, build_context
from api.errors import add_error_handlers, error_response
from api.limits import BodyLimit
from api.openapi import openapi_document
from api.routes import health, jobs, outputs, speech, webhooks
from pipeline.config import Settings


class RequestMetrics:
    """Counts and times every request by route, and writes its audit line (api.audit).

    A plain ASGI middleware: the decorator kind (BaseHTTPMiddleware) adds a task group and
    streams per request on the event loop, which a burst of requests turns into latency
    for everyone, /healthz included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            metrics.REQUESTS.labels(name, str(status)).inc()
            metrics.LATENCY.labels(name).observe(time.perf_counter() - started)
            audit_request(scope, status)


class ReadAdmission:
    """At most `limit` GET and HEAD requests under /v1/ inside the app at once (the API
    gives it the database pool's size plus overflow: more reads than connections would
    only wait in pool threads for one). The rest wait here on the event loop, holding no
    thread, and one that waits past `timeout` gets 503 with Retry-After. A burst of reads
    then costs the event loop little, so /healthz (never held here, like /readyz,
    /metrics and the docs) answers at once. Requests with a body are not held here
    either: a slow upload must not keep a slot."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self._slots: RunVar[anyio.Semaphore] = RunVar("voicebatch_read_slots")

    def _semaphore(self) -> anyio.Semaphore:
        # One per event loop: a semaphore cannot be shared between loops (TestClient).
        slots = self._slots.get(None)
        if slots is None:
            slots = anyio.Semaphore(self.limit, fast_acquire=True)
            self._slots.set(slots)
        return slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        slots = self._semaphore()
        with anyio.move_on_after(self.timeout) as waiting:
            await slots.acquire()
        if waiting.cancelled_caught:
            response = error_response(503, "the API is busy; try again shortly")
            response.headers["Retry-After"] = "5"
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()


def create_app(settings: Settings, dispatcher: Dispatcher, *, redis: Any = None) -> FastAPI:
    """The API for `settings`. Checks the database schema, storage and engine first."""
    context = build_context(settings, dispatcher, redis=redis)
    app = FastAPI(
        title="voicebatch",
        version="1",
        summary="Render speech in bulk: submit books and catalogues, download finished audio.",
        description=(
            "Authenticate with `Authorization: Bearer <key>` (`voicebatch keys create`) "
            "or, where the server trusts an identity provider, `Bearer <JWT>`; each route "
            "needs a scope (jobs:write, jobs:read, speech; admin holds them all). "
            'Every error has the body `{"error": {"message", "field"}}`.'
        ),
    )
    app.state.context = context
    app.openapi = partial(openapi_document, app)  # type: ignore[method-assign]
    app.add_middleware(
        ReadAdmission,
        limit=settings.db_pool_size + settings.db_max_overflow,
        timeout=settings.db_pool_timeout_seconds,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_mb * 1024 * 1024)
    app.add_middleware(RequestMetrics)
    add_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(outputs.router)
    app.include_router(webhooks.router)
    app.include_router(speech.router)
    app.include_router(health.router)
    return app
