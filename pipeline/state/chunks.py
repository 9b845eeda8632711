"""Chunk state: leases, completion, failure, and where rendered audio is recorded.

Part of the state module (pipeline.state.store re-exports every name here): each change
is a conditional UPDATE naming the state it leaves and the lease owner, so a stale or
duplicate caller changes nothing and learns so from the return value.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from pipeline.state.chunk_reads import (  # noqa: F401  (re-exported: one namespace)
    OpenChunks,
    RenderedAudio,
    chunk_groups,
    chunk_items,
    failed_chunks,
    find_rendered_many,
    item_chunks,
    open_among,
)
from pipeline.state.clock import clock
from pipeline.state.models import FINAL_JOB_STATUSES, Chunk, ChunkStatus, Item, Job, utcnow
from pipeline.state.updates import conditional_update as _update


@dataclass(frozen=True)
class ChunkLease:
    """A chunk leased to one owner until `expires_at`."""

    chunk_id: uuid.UUID
    seq: int
    text: str
    content_hash: str
    attempts: int
    expires_at: datetime
    item_id: uuid.UUID | None = None
    voice: str | None = None  # the item's own voice (catalogues); None: the job's


def _gave_up(max_attempts: int) -> Any:
    """The error a chunk is failed with when its renderer kept stopping: the reason, and
    the last error an attempt recorded, if any."""
    reason = f"gave up after {max_attempts} attempts: the renderer stopped before finishing"
    return literal(reason) + func.coalesce(literal("; last error: ") + Chunk.error, "")


def lease_chunks(
    session: Session,
    *,
    job_id: uuid.UUID,
    owner: str,
    limit: int,
    ttl: timedelta,
    max_attempts: int,
    now: datetime | None = None,
    chunk_ids: Sequence[uuid.UUID] | None = None,
) -> list[ChunkLease]:
    """Lease up to `limit` chunks in reading order: pending ones, or ones whose lease expired.

    With `chunk_ids`, only among those (a render message names its chunks); chunks that
    are done, or leased by someone whose lease holds, are skipped, so a duplicate message
    changes nothing. A chunk whose lease expired `max_attempts` times (its renderer keeps
    dying) is failed instead of leased again. Nothing is leased for a finished job.
    Expiry is the database's clock (`now` fixes it instead: tests).
    """
    expires = clock(session, now, ttl)
    now = clock(session, now)
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    if status is None or status in FINAL_JOB_STATUSES:
        return []
    expired = and_(Chunk.status == ChunkStatus.LEASED, Chunk.lease_expires_at < now)
    scope = [Chunk.job_id == job_id]
    if chunk_ids is not None:
        scope.append(Chunk.id.in_(list(chunk_ids)))
    _update(
        session,
        Chunk,
        (*scope, expired, Chunk.attempts >= max_attempts),
        status=ChunkStatus.FAILED,
        lease_owner=None,
        lease_expires_at=None,
        updated_at=now,
        error=_gave_up(max_attempts),
    )
    available = or_(Chunk.status == ChunkStatus.PENDING, expired)
    candidates = session.execute(
        select(Chunk.id, Chunk.seq, Chunk.text, Chunk.content_hash, Chunk.attempts, Chunk.item_id)
        .where(*scope, available)
        .order_by(Chunk.seq)
        .limit(limit)
        # Rows another session is leasing right now are skipped, not waited on: otherwise
        # this caller would block, then find them taken and go home with nothing.
        .with_for_update(skip_locked=True)
    ).all()
    by_id = {row[0]: row for row in candidates}
    if not by_id:
        return []
    # One statement for the batch; the rows are locked, so it takes every one of them.
    taken = session.execute(
        update(Chunk)
        .where(Chunk.id.in_(list(by_id)), available)
        .values(
            status=ChunkStatus.LEASED,
            lease_owner=owner,
            lease_expires_at=expires,
            attempts=Chunk.attempts + 1,
            updated_at=now,
        )
        .returning(Chunk.id, Chunk.lease_expires_at)
        .execution_options(synchronize_session=False)
    ).all()
    expiry: dict[uuid.UUID, datetime] = {
        chunk_id: until for chunk_id, until in taken if until is not None
    }
    taken_rows = [by_id[i] for i, _ in taken]
    # Read apart from the locking query: a join there would lock item rows too, and
    # two renderers leasing chunks of one item would skip each other's chunks.
    voices: dict[uuid.UUID, str | None] = {
        item_id: voice
        for item_id, voice in session.execute(
            select(Item.id, Item.voice).where(
                Item.id.in_({row[5] for row in taken_rows}), Item.voice.is_not(None)
            )
        )
    }
    leases = [
        ChunkLease(
            chunk_id,
            seq,
            text,
            digest,
            attempts + 1,
            expiry[chunk_id],
            item_id,
            voices.get(item_id),
        )
        for chunk_id, seq, text, digest, attempts, item_id in taken_rows
    ]
    return sorted(leases, key=lambda lease: lease.seq)


def lease_owners(session: Session, *, job_id: uuid.UUID) -> list[str]:
    """Owners currently holding leases on this job's chunks (expired leases included)."""
    rows = session.scalars(
        select(Chunk.lease_owner)
        .where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.LEASED)
        .distinct()
    )
    return [owner for owner in rows if owner]


def renew_leases(
    session: Session, *, owner: str, ttl: timedelta, now: datetime | None = None
) -> int:
    """Push the expiry of every lease `owner` still holds; returns how many it holds.
    The database's clock decides both (`now` fixes it instead: tests)."""
    return _update(
        session,
        Chunk,
        (
            Chunk.status == ChunkStatus.LEASED,
            Chunk.lease_owner == owner,
            Chunk.lease_expires_at >= clock(session, now),
        ),
        lease_expires_at=clock(session, now, ttl),
        updated_at=clock(session, now),
    )


def complete_chunk(
    session: Session,
    *,
    chunk_id: uuid.UUID,
    owner: str,
    object_key: str,
    duration: float,
    sample_rate: int,
    cache_hit: bool = False,
) -> bool:
    """leased (by owner) -> done. False if the lease was lost to another owner (taken over
    after it expired, or released, or handed back to pending by the reconciler's
    expire_leases): the caller must not count it. Expiry itself is not checked, on any
    clock: a lease past its expiry that nobody has taken over or handed back yet still
    completes (the audio is stored, and the chunk is done exactly once either way). What
    decides is the owner, and the owner changes only by statements that compare expiry
    with the database's clock (lease_chunks, expire_leases)."""
    now = utcnow()
    return (
        _update(
            session,
            Chunk,
            (Chunk.id == chunk_id, Chunk.status == ChunkStatus.LEASED, Chunk.lease_owner == owner),
            status=ChunkStatus.DONE,
            object_key=object_key,
            duration_seconds=duration,
            sample_rate=sample_rate,
            cache_hit=cache_hit,
            lease_owner=None,
            lease_expires_at=None,
            error=None,
            rendered_at=now,
            updated_at=now,
        )
        == 1
    )


def fail_chunk(
    session: Session,
    *,
    chunk_id: uuid.UUID,
    owner: str,
    error: str,
    retryable: bool,
    max_attempts: int,
) -> ChunkStatus | None:
    """leased (by owner) -> pending (retry) or failed. None if the lease was lost."""
    attempts = session.scalar(
        select(Chunk.attempts).where(
            Chunk.id == chunk_id, Chunk.status == ChunkStatus.LEASED, Chunk.lease_owner == owner
        )
    )
    if attempts is None:
        return None
    to = ChunkStatus.PENDING if retryable and attempts < max_attempts else ChunkStatus.FAILED
    moved = _update(
        session,
        Chunk,
        (Chunk.id == chunk_id, Chunk.status == ChunkStatus.LEASED, Chunk.lease_owner == owner),
        status=to,
        error=error[:4000],
        lease_owner=None,
        lease_expires_at=None,
        updated_at=utcnow(),
    )
    return to if moved else None


@dataclass(frozen=True)
class ExpiredLeases:
    """What expire_leases did: chunks given up on, and (job, chunk) pairs handed back."""

    failed: int
    returned: list[tuple[uuid.UUID, uuid.UUID]]


def expire_leases(
    session: Session, *, max_attempts: int, now: datetime | None = None
) -> ExpiredLeases:
    """Leases that ran out (their renderer died or was cut off) end now: the chunk goes
    back to pending, or is failed with why once it has used max_attempts. Until then it
    would sit `leased` to nobody; its renderer, should it come back, can neither renew
    nor commit (both name the owner and a live lease). The attempt stays counted.
    Expiry is judged by the database's clock (`now` fixes it instead: tests)."""
    now = clock(session, now)
    expired = and_(Chunk.status == ChunkStatus.LEASED, Chunk.lease_expires_at < now)
    failed = _update(
        session,
        Chunk,
        (expired, Chunk.attempts >= max_attempts),
        status=ChunkStatus.FAILED,
        lease_owner=None,
        lease_expires_at=None,
        updated_at=now,
        error=_gave_up(max_attempts),
    )
    returned = session.execute(
        update(Chunk)
        .where(expired)
        .values(status=ChunkStatus.PENDING, lease_owner=None, lease_expires_at=None, updated_at=now)
        .returning(Chunk.job_id, Chunk.id)
        .execution_options(synchronize_session=False)
    ).all()
    return ExpiredLeases(failed, [(job_id, chunk_id) for job_id, chunk_id in returned])


def release_leases(session: Session, *, owner: str) -> int:
    """Hand back every chunk `owner` holds (a graceful stop); the attempt is not counted."""
    return _update(
        session,
        Chunk,
        (Chunk.status == ChunkStatus.LEASED, Chunk.lease_owner == owner),
        status=ChunkStatus.PENDING,
        lease_owner=None,
        lease_expires_at=None,
        attempts=case((Chunk.attempts > 0, Chunk.attempts - 1), else_=0),
        updated_at=utcnow(),
    )


@dataclass(frozen=True)
class TakenOver:
    """A chunk taken back from a renderer that died holding it."""

    seq: int
    text: str
    attempts: int  # attempts used so far, the dead renderer's included
    failed: bool  # it had used max_attempts: failed with why, not rendered again


def take_over_leases(session: Session, *, owner: str, max_attempts: int) -> list[TakenOver]:
    """Take back every chunk `owner` holds because that renderer died (its process is
    gone; embedded mode sees that at once). Unlike release_leases the dead renderer's
    attempt stays counted, so a chunk that kills its renderer fails after max_attempts
    instead of looping: one that used them all is failed with why, the rest go back to
    pending. In reading order."""
    held = and_(Chunk.status == ChunkStatus.LEASED, Chunk.lease_owner == owner)
    now = utcnow()
    taken: list[TakenOver] = []
    for final, to, error in (
        (True, ChunkStatus.FAILED, {"error": _gave_up(max_attempts)}),
        (False, ChunkStatus.PENDING, {}),
    ):
        scope = (held, Chunk.attempts >= max_attempts) if final else (held,)
        rows = session.execute(
            update(Chunk)
            .where(*scope)
            .values(status=to, lease_owner=None, lease_expires_at=None, updated_at=now, **error)
            .returning(Chunk.seq, Chunk.text, Chunk.attempts)
            .execution_options(synchronize_session=False)
        ).all()
        taken += [TakenOver(seq, text, attempts, final) for seq, text, attempts in rows]
    return sorted(taken, key=lambda chunk: chunk.seq)
