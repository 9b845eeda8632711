"""What a failure while rendering says, and what the renderer does about it.

- **chunk**: the chunk's own trouble (a poison text, a batch error isolated to it). The
  chunk goes back to pending with the attempt counted, is rendered again one at a time,
  and fails after `max_attempts`.
- **final**: input or permanent errors (`InputError`, `PermanentError`): retrying cannot
  help, the chunk fails now with its message.
- **transient**: storage, database or broker trouble. Tried again in place with backoff
  for VOICEBATCH_TASK_RETRY_SECONDS; past that the leases are handed back with the
  attempt given back (a transient failure uses up no attempt), and the message is tried
  again later.
- **broken**: the engine, not any chunk, is at fault: a sticky device error
  (`engines.failures`), or the same unexpected error on `BROKEN_AFTER` different chunks in
  a row (`EngineHealth`). Nothing is failed; the leases are handed back and the process
  must be replaced (`EngineBroken`).
"""

from __future__ import annotations

import enum
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pipeline.backoff import backoff_delays
from pipeline.engines.failures import as_engine_error
from pipeline.errors import (
    EngineBroken,
    EngineHung,
    EngineOutOfMemory,
    InputError,
    PermanentError,
    RetryableError,
    VoicebatchError,
)
from pipeline.render.stats import RenderStats

log = logging.getLogger(__name__)
T = TypeVar("T")

# Different chunks failing in a row with the same unexpected error: the engine is broken.
BROKEN_AFTER = 3


class Failure(enum.Enum):
    CHUNK = "chunk"  # pending again, attempt counted; failed after max_attempts
    FINAL = "final"  # failed now
    TRANSIENT = "transient"  # retried in place, then handed back with the attempt given back
    BROKEN = "broken"  # nothing failed; leases handed back; the process is replaced


def is_transient(exc: BaseException) -> bool:
    """Passing trouble of a service (storage, database, broker), not of the chunk: a
    RetryableError other than out of memory, or the database driver's errors."""
    if isinstance(exc, EngineOutOfMemory):
        return False
    return isinstance(exc, RetryableError | DBAPIError | PoolTimeout)


def classify(exc: BaseException) -> Failure:
    """The kind of an engine outcome's failure (see the module doc); EngineHealth adds
    the streak rule on top."""
    exc = as_engine_error(exc)
    if isinstance(exc, EngineBroken):
        return Failure.BROKEN
    if isinstance(exc, InputError | PermanentError):
        return Failure.FINAL
    if is_transient(exc):
        return Failure.TRANSIENT
    return Failure.CHUNK


def _signature(exc: BaseException) -> str:
    """An error's type and message with numbers blanked (addresses, sizes, ids)."""
    return f"{type(exc).__name__}: {re.sub(r'[0-9]+', '#', str(exc))}"


class EngineHealth:
    """Watches one engine's outcomes across every renderer that uses it (one per worker
    process): the same unexpected error on BROKEN_AFTER different chunks in a row, with
    no success between, says the engine is broken. Errors we raise ourselves (input,
    permanent, out of memory, transient) are the chunk's or the service's and never
    count. Thread-safe: a worker's task threads share one."""

    def __init__(self, broken_after: int = BROKEN_AFTER) -> None:
        self.broken_after = broken_after
        self._lock = threading.Lock()
        self._signature: str | None = None
        self._chunks: set[str] = set()
        self.broken: EngineBroken | None = None

    def succeeded(self) -> None:
        with self._lock:
            self._signature, self._chunks = None, set()

    def failed(self, content_hash: str, exc: BaseException) -> Failure:
        """Note one chunk's failure; returns its kind, BROKEN once the streak is long enough."""
        kind = classify(exc)
        with self._lock:
            if kind == Failure.BROKEN:
                self.broken = self.broken or EngineBroken(str(as_engine_error(exc)))
                return kind
            if kind != Failure.CHUNK or isinstance(exc, VoicebatchError):
                return kind
            signature = _signature(exc)
            if signature != self._signature:
                self._signature, self._chunks = signature, set()
            self._chunks.add(content_hash)
            if len(self._chunks) >= self.broken_after:
                self.broken = EngineBroken(
                    f"the engine failed {len(self._chunks)} different chunks in a row with "
                    f"{' '.join(signature.split())[:300]}"
                )
                return Failure.BROKEN
            return kind


def retry_transient(
    what: str,
    call: Callable[[], T],
    *,
    budget_seconds: float,
    stopping: threading.Event | None = None,
    stats: RenderStats | None = None,
) -> T:
    """call(), tried again with backoff and jitter while it fails transiently, for at
    most `budget_seconds` of waiting (VOICEBATCH_TASK_RETRY_SECONDS); then, or once
    `stopping` is set, its last error is raised."""
    delays = backoff_delays(budget=budget_seconds)
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None or (stopping is not None and stopping.is_set()):
                raise
            if stats is not None:
                stats.transient_retries += 1
            log.warning("%s: %s; trying again in %.1f s", what, exc, delay)
            time.sleep(delay)


def note_outcomes(
    health: EngineHealth, content_hashes: Sequence[str], results: Sequence[object]
) -> EngineBroken | None:
    """Tell the engine's health what the engine did with one batch (a result or an
    exception per content hash); the EngineBroken to raise when these failures say the
    engine, not the chunks, is at fault."""
    broken: EngineBroken | None = None
    for digest, result in zip(content_hashes, results, strict=True):
        if not isinstance(result, BaseException):
            health.succeeded()
        elif health.failed(digest, result) == Failure.BROKEN:
            broken = health.broken
    if broken is not None:
        log.critical("engine broken: %s; handing back this batch's chunks", broken)
    return broken


def exit_hung(exc: EngineHung) -> None:
    """What a renderer does by default when a batch overran max_batch_seconds, after
    handing its chunks back: end the process, for its supervisor to start a fresh one.
    The engine's threads are stuck, so nothing short of a new process frees them."""
    log.critical("%s; exiting", exc)
    logging.shutdown()
    os._exit(exc.exit_code)
