"""Chunk state: leases, completion, failure, and where rendered audio is recorded.

Part of the state module (pipeline.state.store re-exports every name here): each change
is a conditional UPDATE naming the state it leaves and the lease owner, so a stale or
duplicate caller changes nothing and learns so from the return value.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

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
    """
    now = now or utcnow()
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
    expires = now + ttl
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
        .returning(Chunk.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    taken_rows = [by_id[i] for i in taken]
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
        ChunkLease(chunk_id, seq, text, digest, attempts + 1, expires, item_id, voices.get(item_id))
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
    """Push the expiry of every lease `owner` still holds; returns how many it holds."""
    now = now or utcnow()
    return _update(
        session,
        Chunk,
        (
            Chunk.status == ChunkStatus.LEASED,
            Chunk.lease_owner == owner,
            Chunk.lease_expires_at >= now,
        ),
        lease_expires_at=now + ttl,
        updated_at=now,
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
    after it expired, or released): the caller must not count it. A lease past its expiry
    that nobody took over still completes: the audio is stored, and the chunk is done
    exactly once either way (expiry is not checked here)."""
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
    nor commit (both name the owner and a live lease). The attempt stays counted."""
    now = now or utcnow()
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
class RenderedAudio:
    object_key: str
    duration: float
    sample_rate: int


def find_rendered_many(
    session: Session, *, content_hashes: Sequence[str]
) -> dict[str, RenderedAudio]:
    """Audio some earlier chunk (any job) rendered for each of these content hashes, in
    one query; hashes with none are missing from the result."""
    if not content_hashes:
        return {}
    rows = session.execute(
        select(
            Chunk.content_hash, Chunk.object_key, Chunk.duration_seconds, Chunk.sample_rate
        ).where(Chunk.content_hash.in_(list(content_hashes)), Chunk.status == ChunkStatus.DONE)
    ).all()
    found: dict[str, RenderedAudio] = {}
    for digest, key, duration, rate in rows:
        if key is not None and duration is not None and rate is not None:
            found.setdefault(digest, RenderedAudio(key, float(duration), int(rate)))
    return found


def item_chunks(session: Session, *, item_id: uuid.UUID) -> Sequence[Chunk]:
    return session.scalars(select(Chunk).where(Chunk.item_id == item_id).order_by(Chunk.seq)).all()


def failed_chunks(session: Session, *, job_id: uuid.UUID) -> Sequence[Chunk]:
    return session.scalars(
        select(Chunk)
        .where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.FAILED)
        .order_by(Chunk.seq)
    ).all()


def chunk_items(session: Session, *, chunk_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The items these chunks belong to."""
    return list(
        session.scalars(select(Chunk.item_id).where(Chunk.id.in_(list(chunk_ids))).distinct())
    )


@dataclass(frozen=True)
class OpenChunks:
    """Of some chunks, how many wait to be rendered, and when the first lease held by
    someone else runs out (None if none is leased)."""

    pending: int
    leased: int
    first_expiry: datetime | None


def open_among(session: Session, *, chunk_ids: Sequence[uuid.UUID]) -> OpenChunks:
    """How many of these chunks are not final yet: pending, or leased."""
    rows = session.execute(
        select(Chunk.status, func.count(), func.min(Chunk.lease_expires_at))
        .where(
            Chunk.id.in_(list(chunk_ids)),
            Chunk.status.in_([ChunkStatus.PENDING, ChunkStatus.LEASED]),
        )
        .group_by(Chunk.status)
    ).all()
    counts = {status: (int(count), expiry) for status, count, expiry in rows}
    leased, expiry = counts.get(ChunkStatus.LEASED, (0, None))
    if expiry is not None and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)  # SQLite hands back naive UTC for min()
    return OpenChunks(counts.get(ChunkStatus.PENDING, (0, None))[0], leased, expiry)


def chunk_groups(
    session: Session, *, job_id: uuid.UUID, size: int, pending_only: bool = True
) -> list[list[uuid.UUID]]:
    """The job's chunk ids in reading order, `size` to a message."""
    query = select(Chunk.id).where(Chunk.job_id == job_id).order_by(Chunk.seq)
    if pending_only:
        query = query.where(Chunk.status == ChunkStatus.PENDING)
    ids = list(session.scalars(query))
    return [ids[i : i + size] for i in range(0, len(ids), size)]
