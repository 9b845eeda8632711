"""FastAPI dependencies and their Annotated aliases: the context (`Context`), a session in
one transaction (`SessionDep`) and the caller's API key, rate-limited (`KeyDep`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api import metrics
from api.context import ApiContext
from api.errors import RateLimited, Unauthorized
from pipeline.state.db import transaction
from pipeline.state.keys import authenticate
from pipeline.state.models import ApiKey

bearer = HTTPBearer(auto_error=False, description="An API key from `voicebatch keys create`.")


def context_of(request: Request) -> ApiContext:
    """The application's context."""
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(context_of)]


def session_of(context: Context) -> Iterator[Session]:
    """A session in one transaction for the request, committed when it succeeds."""
    with transaction(context.factory) as session:
        yield session


SessionDep = Annotated[Session, Depends(session_of)]


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
