"""Assembly leases and attempts: an item's assembly and a job's finalization are held by
one owner at a time, like a chunk's render, and given up on after `max_attempts`.

An item (or job) claimed for assembly sits in `assembling` with no owner until an
assembler takes its lease (`take_item_assembly`, `take_job_finalization`): one
conditional UPDATE, which only an item with no owner, or whose lease ran out, matches.
A second message for an item whose lease is live finds it taken and does nothing. The
assembler renews its leases on a heartbeat; one that dies stops renewing, and the
reconciler (`expire_assembly_leases`) hands the item back once the lease has run out,
to be published again. Every take counts an attempt; past `max_attempts` the item or
job is failed with why. Expiry is always the database's clock (pipeline.state.clock).

A rendered chunk whose object vanished (lifecycle expiry of `chunks/`, a cleanup) goes
back to pending with its item (`reopen_chunks`), and is rendered again.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from pipeline.state.clock import clock
from pipeline.state.models import (
    FINAL_JOB_STATUSES,
    Chunk,
    ChunkStatus,
    Item,
    ItemStatus,
    Job,
    JobStatus,
)
from pipeline.state.updates import conditional_update as _update
from pipeline.state.webhooks import record_final_event


class Take(enum.StrEnum):
    """What an attempt to take an assembly lease found."""

    TAKEN = "taken"  # the caller holds the lease now: assemble
    BUSY = "busy"  # another assembler's lease is live: do nothing
    NOT_DUE = "not_due"  # not in `assembling` (done, failed, or not claimed yet)
    GAVE_UP = "gave_up"  # max_attempts used: failed now, with why


def _gave_up(table: Any, max_attempts: int) -> Any:
    reason = f"assembly gave up after {max_attempts} attempts"
    return literal(reason) + func.coalesce(literal("; last error: ") + table.error, "")


def _free(table: Any, now: Any) -> Any:
    return or_(table.assembly_owner.is_(None), table.assembly_expires_at < now)


def _take(
    session: Session,
    table: Any,
    row_id: uuid.UUID,
    assembling: Any,
    failed: Any,
    *,
    owner: str,
    ttl: timedelta,
    max_attempts: int,
    now: datetime | None,
) -> Take:
    at = clock(session, now)
    where = (table.id == row_id, table.status == assembling, _free(table, at))
    failed_values: dict[str, Any] = {"finished_at": at} if table is Job else {}
    if _update(
        session,
        table,
        (*where, table.assembly_attempts >= max_attempts),
        status=failed,
        assembly_owner=None,
        assembly_expires_at=None,
        error=_gave_up(table, max_attempts),
        updated_at=at,
        **failed_values,
    ):
        if table is Job:
            record_final_event(session, job_ids=[row_id])  # its webhook, in this transaction
        return Take.GAVE_UP
    if _update(
        session,
        table,
        where,
        assembly_owner=owner,
        assembly_expires_at=clock(session, now, ttl),
        assembly_attempts=table.assembly_attempts + 1,
        updated_at=at,
    ):
        return Take.TAKEN
    status = session.scalar(select(table.status).where(table.id == row_id))
    return Take.BUSY if status == assembling else Take.NOT_DUE


def take_item_assembly(
    session: Session,
    *,
    item_id: uuid.UUID,
    owner: str,
    ttl: timedelta,
    max_attempts: int,
    now: datetime | None = None,
) -> Take:
    """Take the lease on an item's assembly (`assembling`, no live lease), or learn why not."""
    return _take(
        session,
        Item,
        item_id,
        ItemStatus.ASSEMBLING,
        ItemStatus.FAILED,
        owner=owner,
        ttl=ttl,
        max_attempts=max_attempts,
        now=now,
    )


def take_job_finalization(
    session: Session,
    *,
    job_id: uuid.UUID,
    owner: str,
    ttl: timedelta,
    max_attempts: int,
    now: datetime | None = None,
) -> Take:
    """Take the lease on a job's finalization (book, manifest), or learn why not."""
    return _take(
        session,
        Job,
        job_id,
        JobStatus.ASSEMBLING,
        JobStatus.FAILED,
        owner=owner,
        ttl=ttl,
        max_attempts=max_attempts,
        now=now,
    )


def renew_assembly(
    session: Session, *, owner: str, ttl: timedelta, now: datetime | None = None
) -> int:
    """Push the expiry of every live assembly lease `owner` holds; how many it holds."""
    held = 0
    for table in (Item, Job):
        held += _update(
            session,
            table,
            (table.assembly_owner == owner, table.assembly_expires_at >= clock(session, now)),
            assembly_expires_at=clock(session, now, ttl),
        )
    return held


def release_assembly(
    session: Session, *, owner: str, error: str | None = None, refund: bool = False
) -> int:
    """Hand back `owner`'s assembly leases (its work stopped unfinished). `refund`: the
    attempt is not counted (passing trouble, not the item's fault); `error` is kept as
    the last error, named when the item or job is finally given up on."""
    released = 0
    for table in (Item, Job):
        values: dict[str, Any] = {"assembly_owner": None, "assembly_expires_at": None}
        if refund:
            attempts = table.assembly_attempts
            values["assembly_attempts"] = case((attempts > 0, attempts - 1), else_=0)
        if error is not None:
            values["error"] = error[:4000]
        released += _update(session, table, (table.assembly_owner == owner,), **values)
    return released


def count_embedded_attempt(
    session: Session, *, job_id: uuid.UUID, max_attempts: int
) -> list[uuid.UUID]:
    """Embedded mode (one process, no leases): count an assembly attempt on every item of
    the job in `assembling`; those that used `max_attempts` (their assembly kept killing
    the process) are failed instead, and returned."""
    where = (Item.job_id == job_id, Item.status == ItemStatus.ASSEMBLING)
    failed = list(
        session.scalars(
            update(Item)
            .where(*where, Item.assembly_attempts >= max_attempts)
            .values(status=ItemStatus.FAILED, error=_gave_up(Item, max_attempts))
            .returning(Item.id)
            .execution_options(synchronize_session=False)
        )
    )
    _update(session, Item, where, assembly_attempts=Item.assembly_attempts + 1)
    return failed


@dataclass(frozen=True)
class Reopened:
    """What reopen_chunks sent back: chunks to render again, and their content hashes
    (for a cache index to forget)."""

    chunk_ids: list[uuid.UUID] = field(default_factory=list)
    content_hashes: list[str] = field(default_factory=list)
    engine: str | None = None  # the job's: its render messages go to that engine's queue


def rendered_keys(session: Session, *, job_id: uuid.UUID) -> list[str]:
    """The object keys the job's done chunks name (each once)."""
    return sorted(
        key
        for key in session.scalars(
            select(Chunk.object_key)
            .where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.DONE)
            .distinct()
        )
        if key is not None
    )


def reopen_chunks(session: Session, *, job_id: uuid.UUID, object_keys: Sequence[str]) -> Reopened:
    """done -> pending for this job's chunks whose object (one of `object_keys`) is gone,
    their items back to pending (assembly is claimed again once they are rendered), and
    the job back to rendering. Their attempts start again: the chunks did nothing wrong."""
    if not object_keys:
        return Reopened()
    rows = session.execute(
        update(Chunk)
        .where(
            Chunk.job_id == job_id,
            Chunk.status == ChunkStatus.DONE,
            Chunk.object_key.in_(list(object_keys)),
        )
        .values(
            status=ChunkStatus.PENDING,
            object_key=None,
            duration_seconds=None,
            sample_rate=None,
            cache_hit=False,
            attempts=0,
            rendered_at=None,
            updated_at=clock(session, None),
        )
        .returning(Chunk.id, Chunk.item_id, Chunk.content_hash)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        return Reopened()
    _update(
        session,
        Item,
        (
            Item.id.in_({item for _, item, _ in rows}),
            Item.status.in_([ItemStatus.ASSEMBLING, ItemStatus.DONE]),
        ),
        status=ItemStatus.PENDING,
        assembly_owner=None,
        assembly_expires_at=None,
        mastering=None,
        updated_at=clock(session, None),
    )
    _update(
        session,
        Job,
        (Job.id == job_id, Job.status != JobStatus.CANCELLED),
        status=JobStatus.RENDERING,
        assembly_owner=None,
        assembly_expires_at=None,
        finished_at=None,
        error=None,
        updated_at=clock(session, None),
    )
    engine = session.scalar(select(Job.engine).where(Job.id == job_id))
    return Reopened([c for c, _, _ in rows], sorted({h for _, _, h in rows}), engine)


@dataclass
class DueAssembly:
    """What the reconciler publishes again: items to assemble and jobs to finalize whose
    lease ran out, or that were claimed and never started for `grace`."""

    items: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (job, item)
    jobs: list[uuid.UUID] = field(default_factory=list)
    gave_up: int = 0  # items and jobs failed here after max_attempts


def expire_assembly_leases(
    session: Session,
    *,
    grace: timedelta,
    max_attempts: int,
    include_unstarted: bool = True,
    now: datetime | None = None,
) -> DueAssembly:
    """Assembly leases that ran out end now (given up on after max_attempts), and those
    items and jobs are due again, as are ones claimed but not started for `grace`
    (`include_unstarted`: only when the assemble queue is idle; a backlog holds their
    messages already). Each one due is touched, so it is due again only after another
    `grace`, not every round: a live lease is never published again."""
    at = clock(session, now)
    due = DueAssembly()
    active = [*(s for s in JobStatus if s not in FINAL_JOB_STATUSES)]
    open_items = (
        select(func.count())
        .where(Item.job_id == Job.id, Item.status.in_([ItemStatus.PENDING, ItemStatus.ASSEMBLING]))
        .scalar_subquery()
    )
    scopes: list[tuple[Any, Any, Any]] = [
        (Item, ItemStatus.ASSEMBLING, ItemStatus.FAILED),
        (Job, JobStatus.ASSEMBLING, JobStatus.FAILED),
    ]
    for table, assembling, failed in scopes:
        scope = [table.status == assembling]
        if table is Item:
            scope.append(Item.job_id.in_(select(Job.id).where(Job.status.in_(active))))
        else:
            scope.append(open_items == 0)
        expired = and_(table.assembly_owner.is_not(None), table.assembly_expires_at < at)
        failed_values: dict[str, Any] = {"finished_at": at} if table is Job else {}
        gave_up = session.scalars(
            update(table)
            .where(*scope, expired, table.assembly_attempts >= max_attempts)
            .values(
                status=failed,
                assembly_owner=None,
                assembly_expires_at=None,
                error=_gave_up(table, max_attempts),
                updated_at=at,
                **failed_values,
            )
            .returning(table.id)
            .execution_options(synchronize_session=False)
        ).all()
        due.gave_up += len(gave_up)
        if table is Job:
            record_final_event(session, job_ids=gave_up)  # their webhooks, in this transaction
        wanted = [expired]
        if include_unstarted:
            wanted.append(
                and_(table.assembly_owner.is_(None), table.updated_at < clock(session, now, -grace))
            )
        columns = (Item.job_id, Item.id) if table is Item else (Job.id,)
        rows = session.execute(
            update(table)
            .where(*scope, or_(*wanted))
            .values(assembly_owner=None, assembly_expires_at=None, updated_at=at)
            .returning(*columns)
            .execution_options(synchronize_session=False)
        ).all()
        if table is Item:
            due.items = [(row[0], row[1]) for row in rows]
        else:
            due.jobs = [row[0] for row in rows]
    # oldest job first, as the rest of a round (UPDATE ... RETURNING has no order)
    jobs = {job for job, _ in due.items} | set(due.jobs)
    age = dict(
        (row[0], row[1])
        for row in session.execute(select(Job.id, Job.created_at).where(Job.id.in_(list(jobs))))
    )
    due.items.sort(key=lambda pair: (age[pair[0]], str(pair[0]), str(pair[1])))
    due.jobs.sort(key=lambda job: (age[job], str(job)))
    return due
