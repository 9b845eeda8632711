"""The submit API: `create_app(settings, dispatcher)` builds the FastAPI application.

Routes are thin: authenticate, validate, call the pipeline, translate errors. Every
error body is {"error": {"message": ..., "field": ...}} with the status the error tree
gives it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import metrics
from api.limits import BodyLimit, RateLimiter
from pipeline.config import Settings
from pipeline.engines import EngineInfo, engine_info
from pipeline.errors import VoicebatchError, http_status_for
from pipeline.plan.documents import FieldError
from pipeline.state.db import create_db_engine, ensure_schema, session_factory
from pipeline.storage.base import ObjectStore
from pipeline.storage.factory import open_store

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Publishes task messages (workers.dispatch.CeleryDispatcher in production)."""

    def render(self, job_id: uuid.UUID, groups: Any) -> None: ...

    def ping(self, timeout: float = 3.0) -> None: ...


@dataclass
class ApiContext:
    settings: Settings
    factory: sessionmaker[Session]
    dispatcher: Dispatcher
    chunk_store: ObjectStore
    engine: EngineInfo
    limiter: RateLimiter | None
    redis: Any


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "field": field}}, status_code=status)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def create_app(settings: Settings, dispatcher: Dispatcher, *, redis: Any = None) -> FastAPI:
    """The API for `settings`. Checks the database schema, storage and engine first."""
    db = create_db_engine(settings.resolved_database_url)
    ensure_schema(db, auto_upgrade=False)
    if redis is None and settings.resolved_redis_url:
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(
            settings.resolved_redis_url, socket_timeout=3, socket_connect_timeout=3
        )
    context = ApiContext(
        settings=settings,
        factory=session_factory(db),
        dispatcher=dispatcher,
        chunk_store=open_store(settings.resolved_storage_url, settings),
        engine=engine_info(settings),
        limiter=RateLimiter(redis, settings.api_rate_limit) if redis is not None else None,
        redis=redis,
    )
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

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.REQUESTS.labels(name, str(response.status_code)).inc()
        metrics.LATENCY.labels(name).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths and wrong methods get the same error body as everything else.
        response = error_response(exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = _field(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return error_response(422, f"{field}: {message}", field)

    @app.exception_handler(DBAPIError)
    async def database_down(_request: Request, exc: DBAPIError) -> JSONResponse:
        log.error("database error: %s", " ".join(str(exc.orig).split()))
        response = error_response(503, "the job database is unavailable; try again shortly")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.exception_handler(VoicebatchError)
    async def ours(_request: Request, exc: VoicebatchError) -> JSONResponse:
        field = exc.field if isinstance(exc, FieldError) else None
        status = http_status_for(exc)
        if status >= 500:
            log.error("request failed: %s", exc)
        response = error_response(status, exc.message, field)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        elif status == 503:
            response.headers["Retry-After"] = "5"
        return response

    from api.downloads import router as downloads
    from api.routes import router

    app.include_router(router)
    app.include_router(downloads)

    @app.get("/healthz", tags=["health"], summary="The process is up.")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Database, broker, storage and Redis are reachable.",
        responses={503: {"description": "Something is unreachable; the body says what."}},
    )
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}

        def check(name: str, probe: Callable[[], Any]) -> None:
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:
                # Details (hosts, users) go to the log, not to unauthenticated callers.
                log.warning("readyz: %s unreachable: %s", name, " ".join(str(exc).split()))
                checks[name] = f"unreachable ({type(exc).__name__})"

        def database() -> None:
            with context.factory() as session:
                session.execute(text("SELECT 1"))

        check("database", database)
        check("broker", lambda: context.dispatcher.ping(3.0))
        check("storage", lambda: context.chunk_store.exists("readyz-probe"))
        if context.redis is not None:
            check("redis", context.redis.ping)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics.")
    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
