"""Issue 16, defects 5 and 10: assembly leases, assembly attempts, and leases judged by the
database's clock. Runs on SQLite here and on PostgreSQL in
tests/integration/test_assembly_postgres.py (the same tests, imported)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.leases import AssemblyHeartbeat
from pipeline.state import assembly, store
from pipeline.state.assembly import Take
from pipeline.state.db import transaction
from pipeline.state.models import Item, ItemStatus, JobStatus
from pipeline.state.reconcile import find_due_work
from tests.support.state import complete, lease, new_job

TTL = timedelta(minutes=5)


def _claimed_items(db: sessionmaker[Session]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A job whose chunks are all done and whose items are claimed for assembly."""
    job_id = new_job(db, chunks_per_item=(2, 1), fingerprint=uuid.uuid4().hex * 2)
    for chunk in lease(db, job_id, "r"):
        assert complete(db, chunk, "r")
    with transaction(db) as session:
        items = store.claim_ready_items(session, job_id=job_id)
    assert len(items) == 2
    return job_id, items


def _take(db: sessionmaker[Session], item: uuid.UUID, owner: str, ttl: timedelta = TTL) -> Take:
    with transaction(db) as session:
        return assembly.take_item_assembly(
            session, item_id=item, owner=owner, ttl=ttl, max_attempts=3
        )


def _due(db: sessionmaker[Session], grace: timedelta) -> list[tuple[uuid.UUID, uuid.UUID]]:
    with transaction(db) as session:
        return find_due_work(
            session, grace=grace, group_size=4, max_attempts=3, include_idle_pending=False
        ).assemble


def test_a_live_assembly_lease_is_neither_taken_again_nor_republished(
    db: sessionmaker[Session],
) -> None:
    job_id, (item, other) = _claimed_items(db)
    assert _take(db, item, "a") == Take.TAKEN
    assert _take(db, item, "b") == Take.BUSY  # a second message for it does nothing
    time.sleep(0.05)
    # The reconciler, however short its grace, republishes only the unstarted item.
    assert _due(db, timedelta(0)) == [(job_id, other)]
    assert _due(db, timedelta(hours=1)) == []  # and that one only once per grace
    with transaction(db) as session:
        assert store.complete_item(session, item_id=item, object_key="f", duration=1.0, owner="a")
        assert not store.complete_item(
            session, item_id=other, object_key="f", duration=1.0, owner="a"
        )  # not its lease


def test_an_expired_assembly_lease_is_republished_and_given_up_after_max_attempts(
    db: sessionmaker[Session],
) -> None:
    job_id, (item, _) = _claimed_items(db)
    for attempt in range(3):  # the assembler dies each time: its lease runs out
        assert _take(db, item, f"dead{attempt}", ttl=timedelta(seconds=-1)) == Take.TAKEN
        if attempt == 1:
            with transaction(db) as session:  # what a try died of is kept
                session.get(Item, item).error = "MemoryError: encoder"  # type: ignore[union-attr]
        due = _due(db, timedelta(hours=1))
        # published again while attempts remain; then failed, not published
        assert ((job_id, item) in due) == (attempt < 2), attempt
    assert _take(db, item, "late") == Take.NOT_DUE
    with transaction(db) as session:
        failed = store.get_item(session, item_id=item)
        assert failed.status == ItemStatus.FAILED
        assert failed.error is not None and "gave up after 3 attempts" in failed.error
        assert "MemoryError: encoder" in failed.error
    # a take that finds the attempts used up fails the item itself
    _, (other, _) = _claimed_items(db)
    for attempt in range(3):
        assert _take(db, other, f"dead{attempt}", ttl=timedelta(seconds=-1)) == Take.TAKEN
    assert _take(db, other, "late") == Take.GAVE_UP


def test_a_heartbeat_keeps_a_long_assembly_and_passing_trouble_refunds_the_attempt(
    db: sessionmaker[Session],
) -> None:
    _, (item, _) = _claimed_items(db)
    second = timedelta(seconds=1)
    assert _take(db, item, "a", ttl=second) == Take.TAKEN
    with AssemblyHeartbeat(db, "a", second, interval=0.2):
        time.sleep(1.6)  # longer than the lease: renewed meanwhile
        assert _take(db, item, "b") == Take.BUSY
    with transaction(db) as session:
        assert assembly.release_assembly(session, owner="a", refund=True) == 1
        assert store.get_item(session, item_id=item).assembly_attempts == 0
    assert _take(db, item, "b") == Take.TAKEN


def test_finalization_has_a_lease_too(db: sessionmaker[Session]) -> None:
    job_id, items = _claimed_items(db)
    with transaction(db) as session:
        for item in items:
            store.complete_item(session, item_id=item, object_key="f", duration=1.0)
        assert store.claim_finalization(session, job_id=job_id)
    with transaction(db) as session:
        first = assembly.take_job_finalization(
            session, job_id=job_id, owner="a", ttl=TTL, max_attempts=3
        )
        second = assembly.take_job_finalization(
            session, job_id=job_id, owner="b", ttl=TTL, max_attempts=3
        )
    assert (first, second) == (Take.TAKEN, Take.BUSY)
    with transaction(db) as session:
        due = find_due_work(
            session, grace=timedelta(0), group_size=4, max_attempts=3, include_idle_pending=False
        )
    assert due.finalize == []


def test_a_vanished_chunk_object_sends_its_chunk_item_and_job_back(
    db: sessionmaker[Session],
) -> None:
    job_id, (item, _) = _claimed_items(db)
    with transaction(db) as session:
        job = store.get_job(session, job_id)
        job.status = JobStatus.ASSEMBLING
        (chunk, *_) = store.item_chunks(session, item_id=item)
    with transaction(db) as session:
        reopened = assembly.reopen_chunks(session, job_id=job_id, object_keys=["k"])
    # every chunk of this job was recorded at "k" (tests.support.state.complete)
    assert chunk.id in reopened.chunk_ids and len(reopened.chunk_ids) == 3
    with transaction(db) as session:
        assert store.get_job(session, job_id).status == JobStatus.RENDERING
        assert store.get_item(session, item_id=item).status == ItemStatus.PENDING
        again = store.lease_chunks(
            session, job_id=job_id, owner="r2", limit=10, ttl=TTL, max_attempts=3
        )
    assert len(again) == 3 and {c.attempts for c in again} == {1}


def test_a_fast_clock_cannot_take_a_live_assembly_lease(
    db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, (item, _) = _claimed_items(db)
    assert _take(db, item, "honest") == Take.TAKEN
    ahead = datetime.now(UTC) + timedelta(hours=1)
    monkeypatch.setattr("pipeline.state.models.utcnow", lambda: ahead)
    assert _take(db, item, "fast-clock") == Take.BUSY
