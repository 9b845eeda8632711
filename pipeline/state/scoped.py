"""Reads scoped to what one message names: a job's render facts, items among given ids,
whether any item of a job is still open. Each is an index lookup, so a message costs the
same in a 100-item catalogue as in a 100,000-item one (never a whole job's rows).

Part of the state module, beside `store`; read-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.errors import RecordGone
from pipeline.state.models import Item, ItemStatus, Job, JobStatus


@dataclass(frozen=True)
class RenderTarget:
    """What rendering a job's chunks needs of the job row (not its options or title)."""

    status: JobStatus
    engine: str
    model_version: str
    voice: str
    params: dict[str, Any]


def render_target(session: Session, job_id: uuid.UUID) -> RenderTarget:
    """The job's status, engine, model version, voice and engine parameters."""
    row = session.execute(
        select(Job.status, Job.engine, Job.model_version, Job.voice, Job.params).where(
            Job.id == job_id
        )
    ).first()
    if row is None:
        raise RecordGone(f"no job {job_id}")
    status, engine, version, voice, params = row
    return RenderTarget(JobStatus(status), engine, version, voice, dict(params or {}))


def item_count(session: Session, *, job_id: uuid.UUID) -> int:
    """How many items the job has. Positions run 0..n-1 (store.create_job numbers them),
    so this is the last position plus one: one probe of the (job_id, position) index."""
    last = session.scalar(select(func.max(Item.position)).where(Item.job_id == job_id))
    return 0 if last is None else int(last) + 1


def has_open_items(session: Session, *, job_id: uuid.UUID) -> bool:
    """Whether any item of the job is pending or assembling (stops at the first found)."""
    return (
        session.scalar(
            select(Item.id)
            .where(
                Item.job_id == job_id,
                Item.status.in_([ItemStatus.PENDING, ItemStatus.ASSEMBLING]),
            )
            .limit(1)
        )
        is not None
    )


def job_engines(session: Session, *, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each job's engine name (which render queue its messages go to)."""
    ids = list(job_ids)
    if not ids:
        return {}
    return dict(session.execute(select(Job.id, Job.engine).where(Job.id.in_(ids))).tuples().all())
