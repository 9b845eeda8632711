"""/healthz and /readyz: liveness and reachability of what the API needs. Neither needs an
API key. Prometheus metrics are not served here but on a port of their own (api.metrics)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.context import ApiContext
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


def _probe(context: ApiContext) -> dict[str, str]:
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
    return checks


@router.get(
    "/readyz",
    summary="Database, broker, storage and Redis are reachable (probed at most every 5 s).",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something is unreachable."}},
)
def readyz(context: Context) -> JSONResponse:
    # Probed at most every few seconds (api.readiness): anyone may call this.
    checks = context.readiness.checks(lambda: _probe(context))
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
