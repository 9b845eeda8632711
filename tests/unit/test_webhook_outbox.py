"""The webhook outbox: every way a job becomes final writes its event in the same
transaction (and only for a job with a callback URL), and a delivery is taken by one
sender at a time and moved on by what its attempt ended with."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.state import assembly, store
from pipeline.state import webhooks as outbox
from pipeline.state.assembly import Take
from pipeline.state.db import transaction
from pipeline.state.models import Job, JobStatus, WebhookOutcome, WebhookStatus
from tests.support.state import complete, lease, make_spec

HOOK = "https://hooks.example.com/voicebatch"


def _job(db: sessionmaker[Session], callback: str | None = HOOK) -> uuid.UUID:
    spec = replace(make_spec(fingerprint=uuid.uuid4().hex * 2), callback_url=callback)
    with transaction(db) as session:
        job_id = store.create_job(session, spec=spec)
        assert store.start_job(session, job_id=job_id)
    return job_id


def _assembling(db: sessionmaker[Session], job_id: uuid.UUID) -> None:
    """Every chunk and item done, the job claimed for finalization."""
    for chunk in lease(db, job_id, "r"):
        assert complete(db, chunk, "r")
    with transaction(db) as session:
        for item in store.claim_ready_items(session, job_id=job_id):
            assert store.complete_item(session, item_id=item, object_key="f", duration=1.0)
        assert store.claim_finalization(session, job_id=job_id)


def _events(db: sessionmaker[Session], job_id: uuid.UUID) -> list[str]:
    with transaction(db) as session:
        return [d.event for d in outbox.job_deliveries(session, job_id=job_id)]


def test_a_finished_job_writes_job_done_with_its_details(db: sessionmaker[Session]) -> None:
    job_id = _job(db)
    _assembling(db, job_id)
    assert _events(db, job_id) == []  # nothing before the final state
    with transaction(db) as session:
        assert store.finish_job(session, job_id=job_id, audio_seconds=12.5) == JobStatus.DONE
    with transaction(db) as session:
        (delivery,) = outbox.job_deliveries(session, job_id=job_id)
        body = json.loads(delivery.body)
    assert delivery.event == "job.done" and delivery.url == HOOK
    assert delivery.status == WebhookStatus.PENDING
    assert body["type"] == "job.done"
    assert body["data"]["id"] == str(job_id) and body["data"]["status"] == "done"
    assert body["data"]["audio_seconds"] == 12.5 and body["data"]["finished_at"]


def test_cancelled_and_failed_jobs_write_their_events(db: sessionmaker[Session]) -> None:
    cancelled = _job(db)
    with transaction(db) as session:
        assert store.cancel_job(session, job_id=cancelled)
        assert not store.cancel_job(session, job_id=cancelled)  # no second event
    assert _events(db, cancelled) == ["job.cancelled"]
    failed = _job(db)
    _assembling(db, failed)
    with transaction(db) as session:
        assert store.fail_job(session, job_id=failed, error="the encoder broke")
    assert _events(db, failed) == ["job.failed"]


def test_a_job_without_a_callback_writes_nothing(db: sessionmaker[Session]) -> None:
    job_id = _job(db, callback=None)
    with transaction(db) as session:
        assert store.cancel_job(session, job_id=job_id)
    assert _events(db, job_id) == []


def test_the_event_is_rolled_back_with_the_state_change(db: sessionmaker[Session]) -> None:
    job_id = _job(db)
    with pytest.raises(RuntimeError), transaction(db) as session:
        assert store.cancel_job(session, job_id=job_id)
        raise RuntimeError("the process dies before commit")
    assert _events(db, job_id) == []
    with transaction(db) as session:
        assert store.get_job(session, job_id).status == JobStatus.RENDERING


def test_finalization_given_up_writes_job_failed(db: sessionmaker[Session]) -> None:
    taken = _job(db)
    _assembling(db, taken)
    for attempt in range(2):  # each finalizer dies: its lease runs out
        with transaction(db) as session:
            assert (
                assembly.take_job_finalization(
                    session, job_id=taken, owner=f"d{attempt}", ttl=-timedelta(1), max_attempts=2
                )
                == Take.TAKEN
            )
    with transaction(db) as session:
        assert (
            assembly.take_job_finalization(
                session, job_id=taken, owner="late", ttl=timedelta(minutes=5), max_attempts=2
            )
            == Take.GAVE_UP
        )
    assert _events(db, taken) == ["job.failed"]

    expired = _job(db)
    _assembling(db, expired)
    for attempt in range(2):
        with transaction(db) as session:
            assembly.take_job_finalization(
                session, job_id=expired, owner=f"d{attempt}", ttl=-timedelta(1), max_attempts=2
            )
    with transaction(db) as session:  # the reconciler finds the lease run out
        due = assembly.expire_assembly_leases(session, grace=timedelta(hours=1), max_attempts=2)
    assert due.gave_up == 1
    assert _events(db, expired) == ["job.failed"]


def test_a_delivery_is_taken_by_one_sender_and_retried_when_due(
    db: sessionmaker[Session],
) -> None:
    job_id = _job(db)
    with transaction(db) as session:
        store.cancel_job(session, job_id=job_id)
        (delivery_id,) = outbox.pending_deliveries(session, job_id=job_id)
        assert outbox.due_deliveries(session) == [delivery_id]
    lease_ = timedelta(minutes=1)
    with transaction(db) as session:
        first = outbox.take_delivery(session, delivery_id=delivery_id, lease=lease_)
        assert first is not None and first.number == 1
        assert outbox.take_delivery(session, delivery_id=delivery_id, lease=lease_) is None
        assert outbox.due_deliveries(session) == []  # held
    with transaction(db) as session:
        outbox.record_attempt(
            session,
            taken=first,
            outcome=WebhookOutcome.RETRY,
            started_at=datetime.now(UTC),
            duration_ms=3,
            status_code=500,
            error="HTTP 500",
            retry_in=timedelta(hours=1),
        )
    with transaction(db) as session:
        assert outbox.take_delivery(session, delivery_id=delivery_id, lease=lease_) is None
        # a message that comes early learns how long is left (on the database's clock)
        wait = outbox.due_in(session, delivery_id=delivery_id)
        assert wait is not None and timedelta(minutes=59) < wait <= timedelta(hours=1)
        later = datetime.now(UTC) + timedelta(hours=2)
        second = outbox.take_delivery(session, delivery_id=delivery_id, lease=lease_, now=later)
        assert second is not None and second.number == 2
        assert second.webhook_id == first.webhook_id and second.body == first.body
        outbox.record_attempt(
            session,
            taken=second,
            outcome=WebhookOutcome.GONE,
            started_at=datetime.now(UTC),
            duration_ms=2,
            status_code=410,
        )
    with transaction(db) as session:
        (delivery,) = outbox.job_deliveries(session, job_id=job_id)
        assert delivery.status == WebhookStatus.GONE and delivery.attempts == 2
        assert delivery.next_attempt_at is None
        assert outbox.due_in(session, delivery_id=delivery_id) is None  # final: never due
        far = datetime.now(UTC) + timedelta(days=30)
        assert outbox.take_delivery(session, delivery_id=delivery_id, lease=lease_, now=far) is None
        attempts = outbox.job_attempts(session, job_id=job_id)
        assert [(a.number, a.outcome, a.status_code) for a in attempts] == [
            (1, WebhookOutcome.RETRY, 500),
            (2, WebhookOutcome.GONE, 410),
        ]
        assert session.get(Job, job_id) is not None
