"""Finding work the broker lost: the database is the record, messages are only hints.

A reconciler (`voicebatch reconcile`) asks this module, now and then, what should be in
flight and is not: chunks whose lease ran out (their renderer died; they go back to
pending at once, and Redis would only redeliver its message after the visibility timeout), pending chunks nobody has touched
for a while when the render queue is empty (a broker restarted without its messages),
items whose chunks are all final but were never claimed, and items and jobs whose
assembly lease ran out (their assembler died) or that were claimed and never started
(pipeline.state.assembly). An item or job being assembled under a live lease is never
published again. Publishing any of it again is safe: every task may run twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from pipeline.state import assembly, store
from pipeline.state.clock import clock
from pipeline.state.models import Chunk, ChunkStatus, Item, ItemStatus, Job, JobStatus


@dataclass
class DueWork:
    render: dict[uuid.UUID, list[list[uuid.UUID]]] = field(default_factory=dict)
    assemble: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (job, item)
    finalize: list[uuid.UUID] = field(default_factory=list)
    failed_chunks: int = 0  # chunks given up on here, after max_attempts
    gave_up_assemblies: int = 0  # items and jobs failed here, after max_attempts
    replayed_messages: int = 0  # dead-lettered messages published again (RabbitMQ)

    @property
    def chunks(self) -> int:
        return sum(len(g) for groups in self.render.values() for g in groups)


# pg_advisory_lock key the acting reconciler holds ("vbre")
RECONCILER_LOCK_KEY = 0x76627265


class ReconcilerLock:
    """Only one reconciler acts at a time: the one holding a PostgreSQL session advisory
    lock, on a connection it keeps for as long as it acts. Two reconcilers would
    otherwise publish every lost message twice. The lock goes with the connection, so a
    reconciler that dies (or loses its database) hands it on at once; the others try for
    it each round. SQLite has one process: its lock is always held."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection: Connection | None = None

    def held(self) -> bool:
        """True if this reconciler holds the lock (taking it now if it is free)."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self.connection is not None:
            try:
                self.connection.execute(text("SELECT 1"))
                return True
            except DBAPIError:  # the connection (and with it the lock) is gone
                self.release()
        connection = self.engine.connect()
        try:
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": RECONCILER_LOCK_KEY}
            ).scalar()
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if got:
            self.connection = connection
            return True
        connection.close()
        return False

    def release(self) -> None:
        """Give the lock up. The connection goes back to the pool, which keeps its
        session open: the lock is released explicitly, or the connection discarded."""
        if self.connection is None:
            return
        connection, self.connection = self.connection, None
        try:
            connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": RECONCILER_LOCK_KEY}
            )
            connection.commit()
        except DBAPIError:
            with suppress(DBAPIError):
                connection.invalidate()  # closes the session, and with it the lock
        finally:
            with suppress(DBAPIError):
                connection.close()


def _groups(ids: Sequence[uuid.UUID], size: int) -> list[list[uuid.UUID]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def find_due_work(
    session: Session,
    *,
    grace: timedelta,
    group_size: int,
    max_attempts: int,
    include_idle_pending: bool,
    include_unstarted_assembly: bool = True,
    now: datetime | None = None,
) -> DueWork:
    """What to publish again. `include_idle_pending`: also pending chunks untouched for
    `grace` (only when the render queue is empty: a backlog has them queued already);
    `include_unstarted_assembly`: also items and jobs claimed for assembly and not started
    for `grace` (only when the assemble queue is empty). Times are the database's clock
    (`now` fixes it instead: tests)."""
    due = DueWork()
    active = [JobStatus.PENDING, JobStatus.RENDERING]
    # Leases that ran out go back to pending at once (or fail, after max_attempts):
    # no chunk stays leased to a renderer that is gone while its message waits in line.
    expired = store.expire_leases(session, max_attempts=max_attempts, now=now)
    due.failed_chunks = expired.failed
    returned = {chunk_id for _, chunk_id in expired.returned}
    wanted: list[ColumnElement[bool]] = [Chunk.id.in_(list(returned))] if returned else []
    if include_idle_pending:
        wanted.append(
            and_(
                Chunk.status == ChunkStatus.PENDING,
                Chunk.updated_at < clock(session, now, -grace),
            )
        )
    rows = (
        session.execute(
            select(Chunk.job_id, Chunk.id)
            .join(Job, Job.id == Chunk.job_id)
            .where(Job.status.in_(active), Chunk.status == ChunkStatus.PENDING, or_(*wanted))
            .order_by(Job.created_at, Chunk.job_id, Chunk.seq)
        ).all()
        if wanted
        else []
    )
    by_job: dict[uuid.UUID, list[uuid.UUID]] = {}
    for job_id, chunk_id in rows:
        by_job.setdefault(job_id, []).append(chunk_id)
    due.render = {job: _groups(ids, group_size) for job, ids in by_job.items()}

    # Items whose chunks are all final but were never claimed (the claimer died between
    # its commit and its claim); then items whose assembly lease ran out, or that waited
    # unstarted for longer than grace (their message was lost).
    claimed: list[tuple[uuid.UUID, uuid.UUID]] = []
    for job_id, _, _ in session.execute(
        select(Item.job_id, Job.created_at, Job.id)
        .join(Job, Job.id == Item.job_id)
        .where(Job.status.in_(active), Item.status == ItemStatus.PENDING)
        .distinct()
        .order_by(Job.created_at, Job.id)
    ).all():
        claimed += [(job_id, item) for item in store.claim_ready_items(session, job_id=job_id)]
    stale = assembly.expire_assembly_leases(
        session,
        grace=grace,
        max_attempts=max_attempts,
        include_unstarted=include_unstarted_assembly,
        now=now,
    )
    due.assemble = claimed + [pair for pair in stale.items if pair not in set(claimed)]
    due.gave_up_assemblies = stale.gave_up

    # Jobs whose items are all final: claim them (published once, here); and jobs whose
    # finalization lease ran out or that waited unstarted.
    open_items = (
        select(func.count())
        .where(Item.job_id == Job.id, Item.status.in_([ItemStatus.PENDING, ItemStatus.ASSEMBLING]))
        .scalar_subquery()
    )
    finals = [
        job_id
        for (job_id,) in session.execute(
            select(Job.id)
            .where(Job.status.in_(active), open_items == 0)
            .order_by(Job.created_at, Job.id)
        ).all()
        if store.claim_finalization(session, job_id=job_id)
    ]
    due.finalize = finals + [job for job in stale.jobs if job not in set(finals)]
    return due
