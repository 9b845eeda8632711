"""The read-only queries the metrics exporter (`voicebatch exporter`) runs each round.

Each one is bounded by an index (migration 0006): open chunks by (status, created_at),
finished chunks by rendered_at, finished jobs by finished_at, so a round costs the same
on a database of a thousand jobs or a million. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from pipeline.state.models import (
    Chunk,
    ChunkStatus,
    Item,
    ItemStatus,
    Job,
    JobStatus,
    WebhookDelivery,
    WebhookStatus,
    utcnow,
)
from pipeline.state.reconcile import RECONCILER_LOCK_KEY

OPEN_CHUNKS = (ChunkStatus.PENDING, ChunkStatus.LEASED)


@dataclass(frozen=True)
class Backlog:
    """What the database says is waiting, at `now` (the database's rows, the exporter's clock)."""

    jobs: dict[str, int]  # every JobStatus value, 0 when there is none
    open_chunks: dict[str, int]  # pending and leased
    expired_leases: int  # leased chunks whose lease ran out: another worker will take them
    oldest_pending_chunk_seconds: float  # 0 when nothing is pending
    oldest_assembling_item_seconds: float  # 0 when no item waits for assembly


def backlog(session: Session, *, now: datetime | None = None) -> Backlog:
    """Jobs by status, open chunks, expired leases and the age of the oldest waiting work."""
    now = now or utcnow()
    jobs = {status.value: 0 for status in JobStatus}
    for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        jobs[str(status)] = int(count)
    open_chunks = {status.value: 0 for status in OPEN_CHUNKS}
    rows = session.execute(
        select(Chunk.status, func.count())
        .where(Chunk.status.in_(OPEN_CHUNKS))
        .group_by(Chunk.status)
    )
    for chunk_status, count in rows:
        open_chunks[str(chunk_status)] = int(count)
    expired = session.scalar(
        select(func.count())
        .select_from(Chunk)
        .where(and_(Chunk.status == ChunkStatus.LEASED, Chunk.lease_expires_at < now))
    )
    oldest_chunk = session.scalar(
        select(func.min(Chunk.created_at)).where(Chunk.status == ChunkStatus.PENDING)
    )
    oldest_item = session.scalar(
        select(func.min(Item.updated_at)).where(Item.status == ItemStatus.ASSEMBLING)
    )
    return Backlog(
        jobs=jobs,
        open_chunks=open_chunks,
        expired_leases=int(expired or 0),
        oldest_pending_chunk_seconds=_age(now, oldest_chunk),
        oldest_assembling_item_seconds=_age(now, oldest_item),
    )


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


def chunks_finished_between(
    session: Session, *, after: datetime, until: datetime, limit: int = 50_000
) -> Sequence[tuple[datetime, datetime]]:
    """(created_at, rendered_at) of chunks rendered in (after, until], oldest first: each
    one's time from enqueue (planned and queued with its job) to done."""
    rows = session.execute(
        select(Chunk.created_at, Chunk.rendered_at)
        .where(Chunk.rendered_at > after, Chunk.rendered_at <= until)
        .order_by(Chunk.rendered_at)
        .limit(limit)
    )
    return [(created, rendered) for created, rendered in rows if rendered is not None]


def jobs_finished_between(
    session: Session, *, after: datetime, until: datetime, limit: int = 50_000
) -> Sequence[tuple[str, datetime, datetime]]:
    """(final status, created_at, finished_at) of jobs that ended in (after, until]."""
    rows = session.execute(
        select(Job.status, Job.created_at, Job.finished_at)
        .where(Job.finished_at > after, Job.finished_at <= until)
        .order_by(Job.finished_at)
        .limit(limit)
    )
    return [
        (str(status), created, finished)
        for status, created, finished in rows
        if finished is not None
    ]


def reconciler_lock_held(session: Session) -> bool:
    """Whether some session holds the acting reconciler's advisory lock (PostgreSQL; SQLite
    has one process, and no lock: True)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    held = session.scalar(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = 0 AND objid = :key AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"key": RECONCILER_LOCK_KEY},
    )
    return bool(held)


@dataclass(frozen=True)
class WebhookBacklog:
    """The webhook outbox's undelivered deliveries, at `now`."""

    pending: int  # not yet delivered, gone or given up
    due: int  # of those, due now: a sender should be at them
    oldest_pending_seconds: float  # since the oldest one's event was written; 0: none
    # how long the most overdue one that nobody holds has been due; 0: none (senders
    # keep up: a due delivery is taken within seconds, or the reconciler's sweep queues it)
    oldest_due_seconds: float


def webhook_backlog(session: Session, *, now: datetime | None = None) -> WebhookBacklog:
    """Pending deliveries, those due, the age of the oldest and how long the most overdue
    one has waited for a sender (index: status, next attempt; the pending rows are few
    unless receivers are down)."""
    now = now or utcnow()
    pending = WebhookDelivery.status == WebhookStatus.PENDING
    count, oldest = session.execute(
        select(func.count(), func.min(WebhookDelivery.created_at)).where(pending)
    ).one()
    due = session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(pending, WebhookDelivery.next_attempt_at <= now)
    )
    overdue = session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at)).where(
            pending,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now),
        )
    )
    return WebhookBacklog(
        pending=int(count or 0),
        due=int(due or 0),
        oldest_pending_seconds=_age(now, oldest),
        oldest_due_seconds=_age(now, overdue),
    )
