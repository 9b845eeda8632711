"""The only module that changes job, item and chunk state.

Every change is a conditional UPDATE that names the state it expects to leave (and, for
chunks, the lease owner), so a duplicate or stale caller changes nothing and learns so
from the return value. Callers pass a Session inside a transaction they own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError
from pipeline.state.models import (
    FINAL_JOB_STATUSES,
    Chunk,
    ChunkStatus,
    Item,
    ItemStatus,
    Job,
    JobStatus,
    utcnow,
)


@dataclass(frozen=True)
class ChunkSpec:
    text: str
    paragraph_start: bool
    content_hash: str


@dataclass(frozen=True)
class ItemSpec:
    title: str
    chunks: tuple[ChunkSpec, ...]


@dataclass(frozen=True)
class JobSpec:
    """Everything needed to create a job, its items and chunks in one transaction."""

    title: str
    source_name: str
    source_sha256: str
    fingerprint: str
    engine: str
    voice: str
    model_version: str
    output_format: str
    items: tuple[ItemSpec, ...]
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    author: str | None = None
    output_uri: str | None = None
    kind: str = "book"
    owner_id: uuid.UUID | None = None
    idempotency_key: str | None = None


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


@dataclass(frozen=True)
class JobProgress:
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    chunks_leased: int
    audio_seconds: float
    chunks_cached: int = 0  # done chunks whose audio an earlier identical chunk had made
    items_total: int = 0
    items_done: int = 0
    items_failed: int = 0

    @property
    def chunks_pending(self) -> int:
        return self.chunks_total - self.chunks_done - self.chunks_failed - self.chunks_leased

    @property
    def fraction(self) -> float:
        return (
            (self.chunks_done + self.chunks_failed) / self.chunks_total
            if self.chunks_total
            else 1.0
        )


def _update(session: Session, table: Any, where: tuple[Any, ...], **values: Any) -> int:
    """A conditional UPDATE; returns how many rows matched, which callers check."""
    result = session.execute(
        update(table).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


# --- jobs --------------------------------------------------------------------------------


def create_job(session: Session, *, spec: JobSpec, job_id: uuid.UUID | None = None) -> uuid.UUID:
    """Insert a job with its items and chunks. All or nothing: the caller's transaction."""
    if not spec.items or not any(item.chunks for item in spec.items):
        raise InputError(f"{spec.source_name}: nothing to render (no speakable text)")
    job_id = job_id or uuid.uuid4()
    now = utcnow()
    total = sum(len(item.chunks) for item in spec.items)
    session.add(
        Job(
            id=job_id,
            kind=spec.kind,
            title=spec.title[:500],
            author=spec.author,
            source_name=spec.source_name[:1000],
            source_sha256=spec.source_sha256,
            fingerprint=spec.fingerprint,
            status=JobStatus.PENDING,
            engine=spec.engine,
            voice=spec.voice,
            model_version=spec.model_version,
            params=spec.params,
            output_format=spec.output_format,
            output_uri=spec.output_uri,
            options=spec.options,
            chunks_total=total,
            owner_id=spec.owner_id,
            idempotency_key=spec.idempotency_key,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    item_rows: list[dict[str, Any]] = []
    chunk_rows: list[dict[str, Any]] = []
    seq = 0
    for position, item in enumerate(spec.items):
        item_id = uuid.uuid4()
        item_rows.append(
            {
                "id": item_id,
                "job_id": job_id,
                "position": position,
                "title": item.title[:1000],
                "status": ItemStatus.PENDING,
                "created_at": now,
                "updated_at": now,
            }
        )
        for chunk in item.chunks:
            chunk_rows.append(
                {
                    "id": uuid.uuid4(),
                    "job_id": job_id,
                    "item_id": item_id,
                    "seq": seq,
                    "text": chunk.text,
                    "paragraph_start": chunk.paragraph_start,
                    "status": ChunkStatus.PENDING,
                    "attempts": 0,
                    "content_hash": chunk.content_hash,
                    "cache_hit": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            seq += 1
    session.execute(insert(Item), item_rows)
    if chunk_rows:
        session.execute(insert(Chunk), chunk_rows)
    return job_id


def get_job(session: Session, job_ref: str | uuid.UUID) -> Job:
    """A job by UUID or by a unique prefix of at least 4 characters of its id."""
    if isinstance(job_ref, uuid.UUID):
        job = session.get(Job, job_ref)
        if job is None:
            raise NotFoundError(f"no job {job_ref}")
        return job
    ref = job_ref.strip().lower()
    try:
        return get_job(session, uuid.UUID(ref))
    except ValueError:
        pass
    if len(ref) < 4 or any(ch not in "0123456789abcdef-" for ch in ref):
        raise InputError(
            f"'{job_ref}' is not a job id (give the UUID or at least its first 4 characters)"
        )
    # Uuid columns are stored without dashes on SQLite and compared as text on PostgreSQL.
    candidates = [job for job in session.scalars(select(Job)) if str(job.id).startswith(ref)]
    if not candidates:
        raise NotFoundError(f"no job {job_ref}")
    if len(candidates) > 1:
        raise InputError(
            f"job id prefix '{job_ref}' is ambiguous ({len(candidates)} jobs); give more of it"
        )
    return candidates[0]


def find_resumable_job(session: Session, *, fingerprint: str) -> Job | None:
    """The newest job made by the same command that was not cancelled."""
    return session.scalars(
        select(Job)
        .where(Job.fingerprint == fingerprint, Job.status != JobStatus.CANCELLED)
        .order_by(Job.created_at.desc())
        .limit(1)
    ).first()


def get_owned_job(session: Session, *, job_id: uuid.UUID, owner_id: uuid.UUID) -> Job:
    """A job that belongs to `owner_id`; another owner's job is reported as missing."""
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner_id:
        raise NotFoundError(f"no job {job_id}")
    return job


def find_idempotent_job(session: Session, *, owner_id: uuid.UUID, key: str) -> Job | None:
    """The job an earlier submit with the same Idempotency-Key created."""
    return session.scalars(
        select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == key)
    ).first()


def list_jobs(
    session: Session, *, limit: int = 50, offset: int = 0, owner_id: uuid.UUID | None = None
) -> Sequence[Job]:
    """Newest first; only `owner_id`'s jobs when given."""
    query = select(Job)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
    return session.scalars(
        query.order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit)
    ).all()


def job_progress(session: Session, *, job_id: uuid.UUID) -> JobProgress:
    rows = session.execute(
        select(Chunk.status, func.count(), func.coalesce(func.sum(Chunk.duration_seconds), 0.0))
        .where(Chunk.job_id == job_id)
        .group_by(Chunk.status)
    ).all()
    counts = {status: (count, seconds) for status, count, seconds in rows}

    def count(status: ChunkStatus) -> int:
        return int(counts.get(status, (0, 0.0))[0])

    cached = session.scalar(
        select(func.count()).where(
            Chunk.job_id == job_id, Chunk.status == ChunkStatus.DONE, Chunk.cache_hit.is_(True)
        )
    )
    items = dict(
        session.execute(
            select(Item.status, func.count()).where(Item.job_id == job_id).group_by(Item.status)
        ).all()
    )
    return JobProgress(
        chunks_total=sum(int(c) for c, _ in counts.values()),
        chunks_done=count(ChunkStatus.DONE),
        chunks_failed=count(ChunkStatus.FAILED),
        chunks_leased=count(ChunkStatus.LEASED),
        audio_seconds=float(counts.get(ChunkStatus.DONE, (0, 0.0))[1] or 0.0),
        chunks_cached=int(cached or 0),
        items_total=sum(int(c) for c in items.values()),
        items_done=int(items.get(ItemStatus.DONE, 0)),
        items_failed=int(items.get(ItemStatus.FAILED, 0)),
    )


def _move_job(
    session: Session, job_id: uuid.UUID, frm: Sequence[JobStatus], to: JobStatus, **values: Any
) -> bool:
    now = utcnow()
    if to in FINAL_JOB_STATUSES:
        values.setdefault("finished_at", now)
    result = _update(
        session,
        Job,
        (Job.id == job_id, Job.status.in_(list(frm))),
        status=to,
        updated_at=now,
        **values,
    )
    return result == 1


def start_job(session: Session, *, job_id: uuid.UUID) -> bool:
    """pending -> rendering."""
    return _move_job(session, job_id, [JobStatus.PENDING], JobStatus.RENDERING)


def claim_ready_items(
    session: Session, *, job_id: uuid.UUID, item_ids: Sequence[uuid.UUID] | None = None
) -> list[uuid.UUID]:
    """pending -> assembling for items none of whose chunks is pending or leased.

    Called after the transaction that finished a chunk has committed, by everyone who
    finished one: whichever caller sees the last chunk done wins the conditional update,
    so each item is claimed for assembly exactly once however the renders interleave.
    """
    open_chunk = (
        select(Chunk.id)
        .where(
            Chunk.item_id == Item.id,
            Chunk.status.in_([ChunkStatus.PENDING, ChunkStatus.LEASED]),
        )
        .exists()
    )
    where = [Item.job_id == job_id, Item.status == ItemStatus.PENDING, ~open_chunk]
    if item_ids is not None:
        where.append(Item.id.in_(list(item_ids)))
    claimed = session.scalars(
        update(Item)
        .where(*where)
        .values(status=ItemStatus.ASSEMBLING, updated_at=utcnow())
        .returning(Item.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed, key=str)


def items_in_assembly(session: Session, *, job_id: uuid.UUID) -> list[uuid.UUID]:
    """Items claimed for assembly and not yet finished (an assembler stopped midway)."""
    return list(
        session.scalars(
            select(Item.id)
            .where(Item.job_id == job_id, Item.status == ItemStatus.ASSEMBLING)
            .order_by(Item.position)
        )
    )


def claim_finalization(session: Session, *, job_id: uuid.UUID) -> bool:
    """rendering -> assembling once every item is done or failed: the caller, and only
    that one caller, writes the job's whole-book file and manifest."""
    open_items = session.scalar(
        select(func.count()).where(
            Item.job_id == job_id, Item.status.in_([ItemStatus.PENDING, ItemStatus.ASSEMBLING])
        )
    )
    if open_items:
        return False
    return _move_job(
        session, job_id, [JobStatus.PENDING, JobStatus.RENDERING], JobStatus.ASSEMBLING
    )


def finish_job(session: Session, *, job_id: uuid.UUID, audio_seconds: float) -> JobStatus:
    """assembling -> done, partially_failed (some items failed) or failed (all did)."""
    statuses = list(session.scalars(select(Item.status).where(Item.job_id == job_id)))
    failed = sum(1 for s in statuses if s == ItemStatus.FAILED)
    to = (
        JobStatus.DONE
        if not failed
        else JobStatus.FAILED
        if failed == len(statuses)
        else JobStatus.PARTIALLY_FAILED
    )
    error = None
    if failed:
        bad = session.scalar(
            select(func.count()).where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.FAILED)
        )
        error = f"{failed} of {len(statuses)} items failed ({bad} chunks could not be rendered)"
    if not _move_job(
        session,
        job_id,
        [JobStatus.ASSEMBLING],
        to,
        audio_seconds=audio_seconds,
        error=error,
    ):
        raise InputError(f"job {job_id} is not being assembled; it cannot finish")
    return to


def cancel_job(session: Session, *, job_id: uuid.UUID) -> bool:
    """Any non-final state -> cancelled; its leases are dropped."""
    moved = _move_job(
        session, job_id, [s for s in JobStatus if s not in FINAL_JOB_STATUSES], JobStatus.CANCELLED
    )
    if moved:
        _update(
            session,
            Chunk,
            (Chunk.job_id == job_id, Chunk.status == ChunkStatus.LEASED),
            status=ChunkStatus.PENDING,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        )
    return moved


def retry_failed(session: Session, *, job_id: uuid.UUID) -> int:
    """A user's explicit retry: failed chunks and items go back to pending, the job to rendering."""
    if not _move_job(
        session,
        job_id,
        [JobStatus.PARTIALLY_FAILED, JobStatus.FAILED],
        JobStatus.RENDERING,
        finished_at=None,
        error=None,
    ):
        return 0
    now = utcnow()
    _update(
        session,
        Item,
        (Item.job_id == job_id, Item.status == ItemStatus.FAILED),
        status=ItemStatus.PENDING,
        error=None,
        updated_at=now,
    )
    return _update(
        session,
        Chunk,
        (Chunk.job_id == job_id, Chunk.status == ChunkStatus.FAILED),
        status=ChunkStatus.PENDING,
        attempts=0,
        error=None,
        updated_at=now,
    )


# --- chunks ------------------------------------------------------------------------------


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
        error=f"gave up after {max_attempts} attempts: the renderer stopped before finishing",
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
    leases = [
        ChunkLease(chunk_id, seq, text, digest, attempts + 1, expires, item_id)
        for chunk_id, seq, text, digest, attempts, item_id in (by_id[i] for i in taken)
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
    """leased (by owner) -> done. False if the lease was lost: the caller must not count it."""
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


def find_rendered(session: Session, *, content_hash: str) -> RenderedAudio | None:
    """Audio some earlier chunk (any job) rendered for the same content hash."""
    row = session.execute(
        select(Chunk.object_key, Chunk.duration_seconds, Chunk.sample_rate)
        .where(Chunk.content_hash == content_hash, Chunk.status == ChunkStatus.DONE)
        .limit(1)
    ).first()
    if row is None or row[0] is None or row[1] is None or row[2] is None:
        return None
    return RenderedAudio(row[0], float(row[1]), int(row[2]))


def find_rendered_many(
    session: Session, *, content_hashes: Sequence[str]
) -> dict[str, RenderedAudio]:
    """find_rendered for many hashes in one query."""
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


def job_items(session: Session, *, job_id: uuid.UUID) -> Sequence[Item]:
    return session.scalars(select(Item).where(Item.job_id == job_id).order_by(Item.position)).all()


def failed_chunks(session: Session, *, job_id: uuid.UUID) -> Sequence[Chunk]:
    return session.scalars(
        select(Chunk)
        .where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.FAILED)
        .order_by(Chunk.seq)
    ).all()


# --- items -------------------------------------------------------------------------------


def get_item(session: Session, *, item_id: uuid.UUID) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise NotFoundError(f"no item {item_id}")
    return item


def complete_item(
    session: Session,
    *,
    item_id: uuid.UUID,
    object_key: str,
    duration: float,
    mastering: dict[str, Any] | None = None,
) -> bool:
    """assembling -> done with its output file. A second assembly of a done item updates nothing."""
    return (
        _update(
            session,
            Item,
            (Item.id == item_id, Item.status == ItemStatus.ASSEMBLING),
            status=ItemStatus.DONE,
            object_key=object_key,
            duration_seconds=duration,
            mastering=mastering,
            error=None,
            updated_at=utcnow(),
        )
        == 1
    )


def fail_item(session: Session, *, item_id: uuid.UUID, error: str) -> bool:
    """assembling -> failed (some of its chunks could not be rendered)."""
    return (
        _update(
            session,
            Item,
            (Item.id == item_id, Item.status == ItemStatus.ASSEMBLING),
            status=ItemStatus.FAILED,
            error=error[:4000],
            updated_at=utcnow(),
        )
        == 1
    )


def chunk_items(session: Session, *, chunk_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The items these chunks belong to."""
    return list(
        session.scalars(select(Chunk.item_id).where(Chunk.id.in_(list(chunk_ids))).distinct())
    )


def pending_among(session: Session, *, chunk_ids: Sequence[uuid.UUID]) -> int:
    """How many of these chunks wait to be (re)rendered."""
    return int(
        session.scalar(
            select(func.count()).where(
                Chunk.id.in_(list(chunk_ids)), Chunk.status == ChunkStatus.PENDING
            )
        )
        or 0
    )


def withdraw_job(session: Session, *, job_id: uuid.UUID) -> bool:
    """Delete a job nothing has touched yet (its messages could not be published), so a
    failed submit leaves nothing behind. A job already started is left alone."""
    result = session.execute(
        delete(Job)
        .where(Job.id == job_id, Job.status == JobStatus.PENDING)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1  # items and chunks go with it (ON DELETE CASCADE)
