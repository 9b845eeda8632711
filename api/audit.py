"""The audit log: one JSON line per authenticated request on the `voicebatch.audit`
logger (`pipeline.state.keys.audit`), after the response has started:

    {"event":"request","principal":"key:vb_AbCdEfGh","tenant":"…","method":"POST",
     "route":"/v1/jobs","job":"…","status":201,"client":"10.0.0.7"}

`principal` is the API key (its prefix, never the key) or the token's subject; `job`
is the job the request named or created, if any. Requests refused before a caller was
known are logged by `api.deps` as `auth_failed` lines. Keys created and revoked are
logged by `voicebatch keys` (`key_created`, `key_revoked`)."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.state.keys import audit


class AuditLog:
    """A plain ASGI middleware (see `api.app.RequestMetrics` for why not the decorator
    kind): the route stores its caller in the request state; this writes the line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            caller = state.get("caller")
            if caller is not None:
                job = scope.get("path_params", {}).get("job_id") or state.get("job_id")
                client = scope.get("client")
                audit(
                    "request",
                    principal=caller.principal,
                    tenant=caller.id,
                    method=scope["method"],
                    route=getattr(scope.get("route"), "path", scope["path"]),
                    job=job,
                    status=status,
                    client=client[0] if client else None,
                )
