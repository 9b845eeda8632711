"""Job state: creating a job and every change of a job's status, and the one namespace
for all state (it re-exports `chunks`, `items` and `specs`).

The state package is the only code that changes job, item and chunk rows. Every change is a conditional UPDATE that names the state it expects to leave (and, for
chunks, the lease owner), so a duplicate or stale caller changes nothing and learns so
from the return value. Callers pass a Session inside a transaction they own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError, RecordGone
from pipeline.state.chunks import (  # noqa: F401  (re-exported: one namespace for all state)
    ChunkLease,
    ExpiredLeases,
    OpenChunks,
    RenderedAudio,
    TakenOver,
    chunk_groups,
    chunk_items,
    complete_chunk,
    expire_leases,
    fail_chunk,
    failed_chunks,
    find_rendered_many,
    item_chunks,
    lease_chunks,
    lease_owners,
    open_among,
    release_leases,
    renew_leases,
    take_over_leases,
)
from pipeline.state.creation import (  # noqa: F401  (re-exported: one namespace for all state)
    create_job,
    refresh_planner_stats,
    set_fingerprint,
)
from pipeline.state.items import (  # noqa: F401  (re-exported: one namespace for all state)
    claim_ready_items,
    complete_item,
    fail_item,
    get_item,
    items_in_assembly,
    job_items,
)
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
from pipeline.state.scoped import has_open_items
from pipeline.state.specs import (  # noqa: F401  (re-exported: one namespace for all state)
    ChunkSpec,
    ItemSpec,
    JobProgress,
    JobSpec,
)
from pipeline.state.updates import conditional_update as _update
from pipeline.state.webhooks import record_final_event

# --- jobs --------------------------------------------------------------------------------


def get_job(session: Session, job_ref: str | uuid.UUID) -> Job:
    """A job by UUID or by a unique prefix of at least 4 characters of its id."""
    if isinstance(job_ref, uuid.UUID):
        job = session.get(Job, job_ref)
        if job is None:
            raise RecordGone(f"no job {job_ref}")
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
    if result == 1 and to in FINAL_JOB_STATUSES:
        # Its webhook, in this transaction: the state change and its event, or neither.
        record_final_event(session, job_ids=[job_id])
    return result == 1


def start_job(session: Session, *, job_id: uuid.UUID) -> bool:
    """pending -> rendering."""
    return _move_job(session, job_id, [JobStatus.PENDING], JobStatus.RENDERING)


def claim_finalization(session: Session, *, job_id: uuid.UUID) -> bool:
    """rendering -> assembling once every item is done or failed: the caller, and only
    that one caller, writes the job's whole-book file and manifest."""
    if has_open_items(session, job_id=job_id):  # stops at the first open item
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


def fail_job(session: Session, *, job_id: uuid.UUID, error: str) -> bool:
    """assembling -> failed: its final files could not be written (a permanent error)."""
    return _move_job(session, job_id, [JobStatus.ASSEMBLING], JobStatus.FAILED, error=error[:4000])


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
