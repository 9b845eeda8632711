"""The audit log: one JSON line per authenticated request on the `voicebatch.audit`
logger (`pipeline.state.keys.audit`), after the response has started:

    {"event":"request","principal":"key:vb_AbCdEfGh","tenant":"…","method":"POST",
     "route":"/v1/jobs","job":"…","status":201,"client":"10.0.0.7"}

`principal` is the API key (its prefix, never the key) or the token's subject; `job`
is the job the request named or created, if any. Requests refused before a caller was
known are logged by `api.deps` as `auth_failed` lines. Keys created and revoked are
logged by `voicebatch keys` (`key_created`, `key_revoked`).

`api.app.RequestMetrics` calls `audit_request` as each request ends: it already watches
every response's status, so the audit line costs no middleware layer of its own."""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from pipeline.state.keys import audit


def audit_request(scope: Scope, status: int) -> None:
    """The audit line for one finished HTTP request, if the route knew its caller (the
    route stores it, and any job it names or creates, in the request state)."""
    state: dict[str, Any] = scope.get("state") or {}
    caller = state.get("caller")
    if caller is None:
        return
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
