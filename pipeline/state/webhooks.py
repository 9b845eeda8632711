"""Webhook deliveries: the outbox a job's final state writes into, in the same
transaction, and the record of every attempt at delivering it.

A delivery is one event of one job (`job.done`, ...). It is written by the conditional
UPDATE that moved the job to its final state (`record_final_event`, called only from
this package), so a crash can lose neither the state change nor its event. Senders take
a delivery under a short lease (`take_delivery`), send it, and record the attempt with
when to try again (`record_attempt`). Times are the database's clock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from pipeline.state.clock import clock
from pipeline.state.models import (
    FINAL_JOB_STATUSES,
    Job,
    JobStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookOutcome,
    WebhookStatus,
    utcnow,
)
from pipeline.state.updates import conditional_update as _update

# The event each final job status announces.
EVENTS = {
    JobStatus.DONE: "job.done",
    JobStatus.PARTIALLY_FAILED: "job.partially_failed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}


def webhook_id(delivery_id: uuid.UUID) -> str:
    """The `webhook-id` header of every attempt at one delivery."""
    return f"msg_{delivery_id.hex}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def record_final_event(session: Session, *, job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Write the event of each job in `job_ids` that is in a final state and has a
    callback URL into the outbox; the caller just moved them there, in this transaction.
    Returns the deliveries written."""
    if not job_ids:
        return []
    # Columns, not ORM objects: the identity map may hold the job as it was before the
    # caller's UPDATE (which does not synchronise the session).
    rows = session.execute(
        select(
            Job.id,
            Job.status,
            Job.kind,
            Job.title,
            Job.error,
            Job.audio_seconds,
            Job.output_uri,
            Job.created_at,
            Job.finished_at,
            Job.callback_url,
        ).where(Job.id.in_(list(job_ids)), Job.callback_url.is_not(None))
    ).all()
    written: list[uuid.UUID] = []
    now = utcnow()
    for row in rows:
        status = JobStatus(row.status)
        if status not in FINAL_JOB_STATUSES:
            continue
        event = EVENTS[status]
        body = {
            "type": event,
            "timestamp": _iso(now),
            "data": {
                "id": str(row.id),
                "status": str(status),
                "kind": row.kind,
                "title": row.title,
                "error": row.error,
                "audio_seconds": row.audio_seconds,
                "created_at": _iso(row.created_at),
                "finished_at": _iso(row.finished_at),
                "links": {"job": f"/v1/jobs/{row.id}", "outputs": f"/v1/jobs/{row.id}/outputs"},
            },
        }
        delivery_id = uuid.uuid4()
        session.add(
            WebhookDelivery(
                id=delivery_id,
                job_id=row.id,
                event=event,
                url=row.callback_url,
                body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                status=WebhookStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        written.append(delivery_id)
    session.flush()
    return written


@dataclass(frozen=True)
class TakenDelivery:
    """A delivery taken for one attempt: what to send, and which attempt this is."""

    id: uuid.UUID
    job_id: uuid.UUID
    event: str
    url: str
    body: str
    number: int  # this attempt's number, 1 for the first
    created_at: datetime

    @property
    def webhook_id(self) -> str:
        return webhook_id(self.id)


def _due(session: Session, now: datetime | None) -> tuple[Any, ...]:
    at = clock(session, now)
    return (
        WebhookDelivery.status == WebhookStatus.PENDING,
        WebhookDelivery.next_attempt_at <= at,
        or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < at),
    )


def take_delivery(
    session: Session, *, delivery_id: uuid.UUID, lease: timedelta, now: datetime | None = None
) -> TakenDelivery | None:
    """Take a pending, due delivery nobody holds for one attempt (a lease of `lease`);
    None when it is final, not due yet, or another sender holds it."""
    taken = _update(
        session,
        WebhookDelivery,
        (WebhookDelivery.id == delivery_id, *_due(session, now)),
        lease_expires_at=clock(session, now, lease),
    )
    if not taken:
        return None
    row = session.execute(
        select(
            WebhookDelivery.job_id,
            WebhookDelivery.event,
            WebhookDelivery.url,
            WebhookDelivery.body,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
        ).where(WebhookDelivery.id == delivery_id)
    ).one()
    return TakenDelivery(
        delivery_id, row.job_id, row.event, row.url, row.body, row.attempts + 1, row.created_at
    )


# What a delivery becomes after an attempt that ended so.
_FINAL = {
    WebhookOutcome.DELIVERED: WebhookStatus.DELIVERED,
    WebhookOutcome.GONE: WebhookStatus.GONE,
    WebhookOutcome.REFUSED: WebhookStatus.EXHAUSTED,
    WebhookOutcome.EXHAUSTED: WebhookStatus.EXHAUSTED,
}


def record_attempt(
    session: Session,
    *,
    taken: TakenDelivery,
    outcome: WebhookOutcome,
    started_at: datetime,
    duration_ms: int,
    status_code: int | None = None,
    error: str | None = None,
    retry_in: timedelta | None = None,
) -> None:
    """Record one attempt and move its delivery on: final for every outcome but `retry`,
    which is due again `retry_in` from now. The attempt row is written once per number."""
    session.add(
        WebhookAttempt(
            id=uuid.uuid4(),
            delivery_id=taken.id,
            job_id=taken.job_id,
            number=taken.number,
            url=taken.url,
            status_code=status_code,
            outcome=outcome,
            error=None if error is None else error[:2000],
            started_at=started_at,
            duration_ms=duration_ms,
        )
    )
    now = utcnow()
    values: dict[str, object] = {
        "attempts": taken.number,
        "lease_expires_at": None,
        "last_error": None if error is None else error[:2000],
        "updated_at": now,
    }
    if outcome == WebhookOutcome.RETRY:
        if retry_in is None:
            raise ValueError("a retried attempt needs retry_in")
        values["next_attempt_at"] = clock(session, None, retry_in)
    else:
        values.update(status=_FINAL[outcome], next_attempt_at=None, finished_at=now)
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == taken.id, WebhookDelivery.status == WebhookStatus.PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.flush()


def due_in(
    session: Session, *, delivery_id: uuid.UUID, now: datetime | None = None
) -> timedelta | None:
    """How long until a pending delivery nobody holds is due (None: it is final, held,
    or due already)."""
    at = clock(session, now)
    row = session.execute(
        select(WebhookDelivery.next_attempt_at, at).where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == WebhookStatus.PENDING,
            WebhookDelivery.next_attempt_at > at,
            or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < at),
        )
    ).first()
    if row is None:
        return None
    due, current = row
    if isinstance(current, str):  # SQLite's clock is text in the stored format
        current = datetime.fromisoformat(current).replace(tzinfo=UTC)
    wait: timedelta = due - current
    return wait


def due_deliveries(
    session: Session, *, limit: int = 1000, now: datetime | None = None
) -> list[uuid.UUID]:
    """Pending deliveries that are due and held by nobody, oldest first (the sweep)."""
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(*_due(session, now))
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
    )


def pending_deliveries(session: Session, *, job_id: uuid.UUID) -> list[uuid.UUID]:
    """The job's deliveries still pending (to publish once its final state commits)."""
    return list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.job_id == job_id, WebhookDelivery.status == WebhookStatus.PENDING
            )
        )
    )


def job_deliveries(session: Session, *, job_id: uuid.UUID) -> list[WebhookDelivery]:
    """A job's deliveries, oldest first."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        )
    )


def job_attempts(session: Session, *, job_id: uuid.UUID) -> Sequence[WebhookAttempt]:
    """Every attempt at any of a job's deliveries, in the order they were made."""
    return session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.job_id == job_id)
        .order_by(WebhookAttempt.started_at, WebhookAttempt.number)
    ).all()
