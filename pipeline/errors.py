"""The one error tree, and the one place that maps errors to exit codes and HTTP statuses."""

from __future__ import annotations

# No user value can balloon an error: a message is cut to this many characters, keeping
# its start (what was wrong) and its end (what to do), with an ellipsis between.
MAX_MESSAGE_CHARS = 1000
_TAIL_CHARS = 200


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message` cut to at most `limit` characters, the middle elided with '…'."""
    if len(message) <= limit:
        return message
    head = limit - _TAIL_CHARS - 3
    return f"{message[:head]} … {message[-_TAIL_CHARS:]}"


class VoicebatchError(Exception):
    """voicebatch failed."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(bounded(message or (self.__doc__ or "").strip()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class InputError(VoicebatchError):
    """The input or the request is invalid; fix it and try again (never retried)."""

    exit_code = 2
    http_status = 422


class FieldError(InputError):
    """A request field is invalid; `field` names it the way the request spelled it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class JobTooLarge(FieldError):
    """A job is over a per-job cap (characters or chunks); the message names the setting."""

    http_status = 413


class NotFoundError(InputError):
    """No such job or object."""

    exit_code = 4
    http_status = 404


class RecordGone(NotFoundError):
    """The database has no such job (or item): it was withdrawn or deleted. The one
    not-found that drops a worker's message; a missing object is not one."""


class RetryableError(VoicebatchError):
    """A passing failure (storage, broker, database hiccup, engine out of memory); retry later."""

    exit_code = 75  # EX_TEMPFAIL
    http_status = 503


class EngineOutOfMemory(RetryableError):
    """The engine ran out of memory on this batch; a smaller batch may fit."""


class ChunkObjectsMissing(RetryableError):
    """Rendered chunks' objects are gone from the store (lifecycle expiry, a cleanup):
    their chunks went back to pending, to be rendered again before assembly retries."""

    def __init__(self, message: str, keys: list[str] | None = None) -> None:
        super().__init__(message)
        self.keys = keys or []


class EngineBroken(VoicebatchError):
    """The engine is broken for this process (a sticky device error, or the same error
    on chunk after chunk): no chunk is to blame. The worker hands back what it holds and
    exits, for its supervisor to start a fresh one."""

    exit_code = 69  # EX_UNAVAILABLE
    http_status = 503


class EngineHung(EngineBroken):
    """A batch ran past VOICEBATCH_MAX_BATCH_SECONDS: the engine is stuck."""


class HandedBack(VoicebatchError):
    """The worker is stopping: the work goes back to the queue unfinished, for another
    worker to take (not a failure, and not retried here)."""

    exit_code = 75
    http_status = 503


class PermanentError(VoicebatchError):
    """The work failed and retrying it will not help."""

    exit_code = 1
    http_status = 500


class EngineMismatch(PermanentError):
    """The job was planned for another engine or model version than this worker runs."""


def exit_code_for(exc: BaseException) -> int:
    """The CLI exit code for an exception: ours carry one, Ctrl-C is 130, anything else 1."""
    if isinstance(exc, VoicebatchError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


def http_status_for(exc: BaseException) -> int:
    """The HTTP status for an exception raised under a route."""
    if isinstance(exc, VoicebatchError):
        return exc.http_status
    return 500
