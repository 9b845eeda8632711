"""FastAPI dependencies and their Annotated aliases: the context (`Context`) and the
caller's API key, rate-limited (`KeyDep`).

There is deliberately no session dependency. FastAPI enters a sync generator dependency
in one pool thread, runs the route and validates its response in others, and exits the
dependency last: a session held across those steps keeps its pooled connection while the
request waits for threads, and once every thread waits for a connection nothing moves
(issue 21: 80 concurrent GETs deadlocked the pool). A route opens its own
`transaction(context.factory)` inside its sync body, so a connection is taken and given
back within one thread, and none is held while waiting for anything else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import metrics
from api.context import ApiContext
from api.errors import RateLimited, Unauthorized
from pipeline.state.db import transaction
from pipeline.state.keys import authenticate
from pipeline.state.models import ApiKey

bearer = HTTPBearer(auto_error=False, description="An API key from `voicebatch keys create`.")


async def context_of(request: Request) -> ApiContext:
    """The application's context (async: reading an attribute needs no pool thread)."""
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(context_of)]


def current_key(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The caller's live API key, counted against its rate limit."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    with transaction(context.factory) as session:
        key = authenticate(session, credentials.credentials)
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    if context.limiter is not None:
        wait = context.limiter.hit(str(key.id))
        if wait is not None:
            metrics.RATE_LIMITED.inc()
            raise RateLimited(wait)
    return key


KeyDep = Annotated[ApiKey, Depends(current_key)]
