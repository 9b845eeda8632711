"""FastAPI dependencies and their Annotated aliases: the context (`Context`) and the
caller, authenticated, scope-checked and rate-limited (`Reader`, `Writer`, `Speaker`,
`Admin`; `KeyDep` for any authenticated caller).

A caller presents `Authorization: Bearer <credential>`: an API key (`vb_...`, from
`voicebatch keys create`) or, when the server is configured for it, a JWT
(`api.tokens`). Either way the request gets a `Caller`: the tenant that owns its jobs
and the scopes it holds. Requests without valid credentials are rate-limited per client
address, so guessing keys costs the guesser, not the database.

There is deliberately no session dependency. FastAPI enters a sync generator dependency
in one pool thread, runs the route and validates its response in others, and exits the
dependency last: a session held across those steps keeps its pooled connection while the
request waits for threads, and once every thread waits for a connection nothing moves
(issue 21: 80 concurrent GETs deadlocked the pool). A route opens its own
`transaction(context.factory)` inside its sync body, so a connection is taken and given
back within one thread, and none is held while waiting for anything else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from api import metrics
from api.context import ApiContext
from api.errors import Forbidden, RateLimited, Unauthorized
from api.tokens import looks_like_jwt
from pipeline.state.db import transaction
from pipeline.state.keys import audit, authenticate, grants
from pipeline.state.models import ApiKey

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from `voicebatch keys create` (its scopes are given there).",
)
jwt_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="jwt",
    bearerFormat="JWT",
    description=(
        "A JWT (RS256 or ES256) from the identity provider the server trusts "
        "(VOICEBATCH_JWT_JWKS_URL or VOICEBATCH_JWT_KEY_FILE, with its issuer and "
        "audience). `sub` is the tenant; the `scope` claim (space-separated) or `scp` "
        "(a list) holds its scopes: jobs:write, jobs:read, speech, admin (all of them)."
    ),
)


@dataclass(frozen=True)
class Caller:
    """Who is asking. `id` is the tenant that owns the jobs (an API key's id, or one
    derived from a token's issuer and subject); `principal` names the caller in the
    audit log (`key:<prefix>` or `sub:<subject>`)."""

    id: uuid.UUID
    scopes: frozenset[str]
    principal: str
    key: ApiKey | None = None


async def context_of(request: Request) -> ApiContext:
    """The application's context (async: reading an attribute needs no pool thread)."""
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(context_of)]


def _refuse(context: ApiContext, request: Request, message: str) -> Unauthorized:
    """A 401, counted against the client address's limit (429 past it), and audited."""
    address = request.client.host if request.client else "unknown"
    route = getattr(request.scope.get("route"), "path", request.url.path)
    audit("auth_failed", client=address, route=route, reason=message)
    if context.limiter is not None:
        wait = context.limiter.hit(
            f"addr:{address}", per_minute=context.settings.api_rate_limit_anonymous
        )
        if wait is not None:
            metrics.RATE_LIMITED.inc()
            raise RateLimited(wait)
    return Unauthorized(message)


def _identify(context: ApiContext, request: Request, credential: str) -> Caller:
    if context.tokens is not None and looks_like_jwt(credential):
        try:
            claims = context.tokens.verify(credential)
        except Unauthorized as exc:
            raise _refuse(context, request, exc.message) from exc
        return Caller(claims.tenant, claims.scopes, f"sub:{claims.subject}")
    with transaction(context.factory) as session:
        key = authenticate(session, credential)
    if key is None:
        raise _refuse(context, request, "unknown or revoked API key")
    return Caller(key.id, frozenset(key.scopes.split()), f"key:{key.prefix}", key)


def current_caller(
    security_scopes: SecurityScopes,
    request: Request,
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(jwt_bearer)],
) -> Caller:
    """The authenticated caller, holding the route's scopes, counted against its limit."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _refuse(context, request, "missing API key: send Authorization: Bearer <key>")
    caller = _identify(context, request, credentials.credentials)
    request.state.caller = caller  # for the audit log (api.audit)
    if context.limiter is not None:
        wait = context.limiter.hit(str(caller.id))
        if wait is not None:
            metrics.RATE_LIMITED.inc()
            raise RateLimited(wait)
    for scope in security_scopes.scopes:
        if not grants(caller.scopes, scope):
            raise Forbidden(f"this {caller.principal.split(':')[0]} lacks the {scope} scope")
    return caller


KeyDep = Annotated[Caller, Security(current_caller)]  # any authenticated caller
Reader = Annotated[Caller, Security(current_caller, scopes=["jobs:read"])]
Writer = Annotated[Caller, Security(current_caller, scopes=["jobs:write"])]
Speaker = Annotated[Caller, Security(current_caller, scopes=["speech"])]
Admin = Annotated[Caller, Security(current_caller, scopes=["admin"])]
