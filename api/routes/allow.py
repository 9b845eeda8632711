"""`AllowingRoute`: a route whose 405 answer lists every method its path answers.

Starlette answers a wrong method with the methods of the first route whose path matched,
so `DELETE /v1/jobs` said `Allow: POST` although `GET /v1/jobs` works too (issue 21)."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send


def allowed_methods(scope: Scope) -> str:
    """Every method some route of the app answers at this request's path, sorted."""
    methods: set[str] = set()
    for route in iter_route_contexts(scope["app"].routes):
        if route.methods and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


class AllowingRoute(APIRoute):
    """An APIRoute whose 405 names the methods of all the routes at its path."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().handle(scope, receive, send)
        except HTTPException as exc:
            if exc.status_code != 405 or "app" not in scope:
                raise
            raise HTTPException(405, headers={"Allow": allowed_methods(scope)}) from exc
