"""The submit API: `create_app(settings, dispatcher)` builds the FastAPI application.

Routes are thin: authenticate, validate, call the pipeline, translate errors. Every
error body is {"error": {"message": ..., "field": ...}} with the status the error tree
gives it (`api.errors`). Nothing in api/ imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from api import metrics
from api.context import Dispatcher, build_context
from api.errors import add_error_handlers
from api.limits import BodyLimit
from api.routes import health, jobs, outputs
from pipeline.config import Settings


async def _measure(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    name = getattr(route, "path", "unmatched")
    metrics.REQUESTS.labels(name, str(response.status_code)).inc()
    metrics.LATENCY.labels(name).observe(time.perf_counter() - started)
    return response


def create_app(settings: Settings, dispatcher: Dispatcher, *, redis: Any = None) -> FastAPI:
    """The API for `settings`. Checks the database schema, storage and engine first."""
    context = build_context(settings, dispatcher, redis=redis)
    app = FastAPI(
        title="voicebatch",
        version="1",
        summary="Render speech in bulk: submit books and catalogues, download finished audio.",
        description=(
            "Authenticate with `Authorization: Bearer <key>` (`voicebatch keys create`). "
            'Every error has the body `{"error": {"message", "field"}}`.'
        ),
    )
    app.state.context = context
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_mb * 1024 * 1024)
    app.middleware("http")(_measure)
    add_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(outputs.router)
    app.include_router(health.router)
    return app
