"""What an assembler holds while it works, and what it does when chunk audio vanished.

`AssemblyLease` names the owner, the lease's life and the attempts allowed (the
settings' lease_seconds and max_attempts); `AssemblyHeartbeat` renews the owner's
assembly leases while it masters and encodes, so a long book keeps its lease and a dead
assembler loses it. `record_run` appends a line per assembly run to a journal when one
is configured (the fault suite counts duplicate assemblies from it). `reopen_vanished`
finds which of a job's rendered chunks lost their objects and sends them back to pending.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from pipeline.state import assembly
from pipeline.state.db import transaction
from pipeline.storage.base import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssemblyLease:
    """Who assembles, how long a lease lives between heartbeats, how many tries."""

    owner: str
    seconds: float = 300.0
    max_attempts: int = 3
    journal: Path | None = None  # one line per assembly run (VOICEBATCH_ASSEMBLY_JOURNAL)
    delay_seconds: float = 0.0  # fault tests: a slow assembly (VOICEBATCH_ASSEMBLY_DELAY_MS)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def heartbeat(self, factory: sessionmaker[Session]) -> AssemblyHeartbeat:
        return AssemblyHeartbeat(factory, self.owner, self.ttl, self.seconds / 3)


class AssemblyHeartbeat:
    """Renews every assembly lease `owner` holds, every `interval` seconds, while it works."""

    def __init__(
        self, factory: sessionmaker[Session], owner: str, ttl: timedelta, interval: float
    ) -> None:
        self.factory, self.owner, self.ttl, self.interval = factory, owner, ttl, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="assembly-heartbeat", daemon=True)

    def __enter__(self) -> AssemblyHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with transaction(self.factory) as session:
                    assembly.renew_assembly(session, owner=self.owner, ttl=self.ttl)
            except Exception as exc:  # the database blinked: the next beat tries again
                log.warning("could not renew the assembly leases of %s: %s", self.owner, exc)


def record_run(journal: Path | None, kind: str, row_id: uuid.UUID) -> None:
    """One line `pid kind id` per assembly run, appended in one write (several processes
    share the file)."""
    if journal is None:
        return
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {kind} {row_id}\n".encode())
    finally:
        os.close(fd)


def reopen_vanished(
    factory: sessionmaker[Session],
    chunk_store: ObjectStore,
    *,
    job_id: uuid.UUID,
    keys: Iterable[str],
) -> assembly.Reopened:
    """Send back to pending every rendered chunk of the job whose object is gone: the
    ones assembly tripped over (`keys`) and any other the job's done chunks name that the
    store no longer has (checked only on this rare path)."""
    with transaction(factory) as session:
        recorded = assembly.rendered_keys(session, job_id=job_id)
    gone = set(keys) | {key for key in recorded if not chunk_store.exists(key)}
    with transaction(factory) as session:
        reopened = assembly.reopen_chunks(session, job_id=job_id, object_keys=sorted(gone))
    log.warning(
        "job %s: %d chunk objects gone; %d chunks go back to be rendered again",
        job_id,
        len(gone),
        len(reopened.chunk_ids),
    )
    return reopened
