"""The API's own errors, the one error body and the handlers that give every error it.

Every error body is {"error": {"message": ..., "field": ...}} with the status the error
tree (`pipeline.errors.http_status_for`) gives it. `add_error_handlers` registers the
handlers; `create_app` calls it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorBody
from pipeline.errors import FieldError, InputError, VoicebatchError, http_status_for

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked API key or token."},
    403: {"model": ErrorBody, "description": "The key or token lacks the route's scope."},
    404: {"model": ErrorBody, "description": "No such job for this key."},
    422: {"model": ErrorBody, "description": "Invalid request; `field` names the culprit."},
    429: {"model": ErrorBody, "description": "Rate limit; retry after Retry-After seconds."},
}


class Unauthorized(InputError):
    exit_code = 3
    http_status = 401


class Forbidden(InputError):
    """Authenticated, but the key or token lacks the scope the route needs."""

    exit_code = 3
    http_status = 403


class UnsupportedMediaType(FieldError):
    http_status = 415


class RateLimited(InputError):
    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit reached; retry in {retry_after} s")
        self.retry_after = retry_after


def error_response(
    status: int, message: str, field: str | None = None, *, openai: bool = False
) -> JSONResponse:
    """The one error body, with `status`; `openai` adds OpenAI's `type`, `param` and
    `code` (the routes OpenAI's clients call: OPENAI_PATHS)."""
    detail: dict[str, Any] = {"message": message, "field": field}
    if openai:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        detail |= {"type": kind, "param": field, "code": OPENAI_CODES.get(status)}
    return JSONResponse({"error": detail}, status_code=status)


# OpenAI's speech routes (api.routes.speech): errors in OpenAI's shape too.
OPENAI_PATHS = ("/v1/audio/", "/v1/models")
OPENAI_CODES = {401: "invalid_api_key", 403: "insufficient_scope", 429: "rate_limit_exceeded"}


def _openai(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PATHS)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown paths and wrong methods get the same error body as everything else.
    response = error_response(exc.status_code, str(exc.detail), openai=_openai(request))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = _field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return error_response(422, f"{field}: {message}", field)


# A real outage, worth a retry: the database unreachable or gone mid-request, or no
# free pooled connection within VOICEBATCH_DB_POOL_TIMEOUT_SECONDS.
OUTAGES = (OperationalError, InterfaceError, PoolTimeout, DisconnectionError)
DRIVER_MESSAGE_CHARS = 200


def database_status(exc: SQLAlchemyError) -> int:
    """503 for an outage, 422 for a value the database refuses, 500 for anything else
    (a bug: answering it 503 would send clients retrying for ever)."""
    if isinstance(exc, OUTAGES):
        return 503
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return 503
    if isinstance(exc, DataError):
        return 422
    return 500


def _driver_message(exc: SQLAlchemyError) -> str:
    """The driver's first line (never the statement or its parameters), bounded."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = next((line for line in str(cause).splitlines() if line.strip()), "")
    text = " ".join(first.split()) or type(cause).__name__
    if len(text) > DRIVER_MESSAGE_CHARS:
        text = text[: DRIVER_MESSAGE_CHARS - 1] + "…"
    return text


async def _database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
    status = database_status(exc)
    if status == 503:
        log.error("database unavailable: %s", _driver_message(exc))
        response = error_response(503, "the job database is unavailable; try again shortly")
        response.headers["Retry-After"] = "5"
        return response
    if status == 422:
        # The request carried a value the database cannot hold (an integer out of
        # range, a string too long): the client's to fix, and retrying cannot help.
        message = f"the job database refused a value: {_driver_message(exc)}"
        log.info("request refused by the database: %s", message)
        return error_response(422, message)
    log.error("database error", exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__}); see the server log")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__}); see the server log")


async def _ours(request: Request, exc: VoicebatchError) -> JSONResponse:
    field = exc.field if isinstance(exc, FieldError) else None
    status = http_status_for(exc)
    if status >= 500:
        log.error("request failed: %s", exc)
    response = error_response(status, exc.message, field, openai=_openai(request))
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    elif status == 503:
        response.headers["Retry-After"] = "5"
    return response


def add_error_handlers(app: FastAPI) -> None:
    """Give every error `app` raises or meets the one error body."""
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(SQLAlchemyError)(_database_error)
    app.exception_handler(Exception)(_unexpected)
    app.exception_handler(VoicebatchError)(_ours)
