"""/healthz, /readyz and /metrics: liveness, reachability of what the API needs, and
Prometheus metrics. None of them needs an API key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Context
from api.schemas import Liveness, Readiness
from pipeline.state.db import ping

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up.", response_model=Liveness)
async def healthz() -> dict[str, str]:
    # async: answered on the event loop, so a liveness probe never waits for a pool
    # thread, however busy the request threads (or the database) are.
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database, broker, storage and Redis are reachable.",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something is unreachable."}},
)
def readyz(context: Context) -> JSONResponse:
    checks: dict[str, str] = {}

    def check(name: str, probe: Callable[[], Any]) -> None:
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            # Details (hosts, users) go to the log, not to unauthenticated callers.
            log.warning("readyz: %s unreachable: %s", name, " ".join(str(exc).split()))
            checks[name] = f"unreachable ({type(exc).__name__})"

    check("database", lambda: ping(context.factory))
    check("broker", lambda: context.dispatcher.ping(3.0))
    check("storage", lambda: context.chunk_store.exists("readyz-probe"))
    if context.redis is not None:
        check("redis", context.redis.ping)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format).",
    response_class=PlainTextResponse,
)
def prometheus() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
