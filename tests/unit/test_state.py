"""State transitions. tests/integration/test_state_postgres.py runs these on PostgreSQL too."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import InputError, NotFoundError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, ItemStatus, JobStatus, utcnow
from tests.support.state import TTL, complete, lease, make_spec, new_job


def test_create_job_writes_items_and_chunks_in_reading_order(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(2, 3))
    with transaction(db) as session:
        job = store.get_job(session, job_id)
        assert job.status == JobStatus.RENDERING and job.chunks_total == 5
        items = store.job_items(session, job_id=job_id)
        assert [i.title for i in items] == ["Chapter 1", "Chapter 2"]
        seqs = [c.seq for item in items for c in store.item_chunks(session, item_id=item.id)]
        assert seqs == [0, 1, 2, 3, 4]
        progress = store.job_progress(session, job_id=job_id)
        assert (progress.chunks_total, progress.chunks_done, progress.chunks_pending) == (5, 0, 5)


def test_create_job_with_no_chunks_is_refused_and_writes_nothing(db: sessionmaker[Session]) -> None:
    with pytest.raises(InputError), transaction(db) as session:
        store.create_job(session, spec=make_spec(chunks_per_item=(0,)))
    with transaction(db) as session:
        assert store.list_jobs(session) == []


def test_failed_transaction_leaves_no_half_created_job(db: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), transaction(db) as session:
        store.create_job(session, spec=make_spec())
        raise RuntimeError("crash after insert")
    with transaction(db) as session:
        assert store.list_jobs(session) == []


def test_two_owners_never_lease_the_same_chunk(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(4,))
    first = lease(db, job_id, "a", limit=3)
    second = lease(db, job_id, "b", limit=3)
    assert [c.seq for c in first] == [0, 1, 2]
    assert [c.seq for c in second] == [3]
    assert lease(db, job_id, "c") == []


def test_only_the_lease_owner_can_complete_and_only_once(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(1,))
    (chunk,) = lease(db, job_id, "a")
    assert not complete(db, chunk, "intruder")
    assert complete(db, chunk, "a")
    assert not complete(db, chunk, "a")  # a duplicate delivery changes nothing
    with transaction(db) as session:
        assert store.job_progress(session, job_id=job_id).chunks_done == 1


def test_expired_lease_is_taken_over_and_stale_owner_cannot_commit(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(1,))
    (stale,) = lease(db, job_id, "dead-worker")
    later = utcnow() + TTL + timedelta(seconds=1)
    (fresh,) = lease(db, job_id, "live-worker", now=later)
    assert fresh.chunk_id == stale.chunk_id and fresh.attempts == 2
    assert not complete(db, stale, "dead-worker")
    assert complete(db, fresh, "live-worker")


def test_chunk_whose_renderer_keeps_dying_fails_after_max_attempts(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(1,))
    now = utcnow()
    for attempt in range(3):
        (chunk,) = lease(db, job_id, f"w{attempt}", now=now)
        assert chunk.attempts == attempt + 1
        now += TTL + timedelta(seconds=1)
    assert lease(db, job_id, "w3", now=now) == []
    with transaction(db) as session:
        (failed,) = store.failed_chunks(session, job_id=job_id)
        assert failed.status == ChunkStatus.FAILED and "3 attempts" in (failed.error or "")


def test_expired_leases_end_at_once_and_a_chunk_out_of_attempts_keeps_its_last_error(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(2,))
    now = utcnow()
    first, second = lease(db, job_id, "w1", limit=2, now=now)
    with transaction(db) as session:  # the first chunk's attempt failed with an error
        assert (
            store.fail_chunk(
                session,
                chunk_id=first.chunk_id,
                owner="w1",
                error="EngineOutOfMemory: CUDA out of memory",
                retryable=True,
                max_attempts=3,
            )
            == ChunkStatus.PENDING
        )
    assert [c.attempts for c in lease(db, job_id, "w1b", limit=1, now=now)] == [2]
    now += TTL + timedelta(seconds=1)  # then both renderers died, holding a chunk each
    with transaction(db) as session:
        expired = store.expire_leases(session, max_attempts=3, now=now)
    assert expired.failed == 0 and len(expired.returned) == 2  # back to pending, at once
    assert [c.attempts for c in lease(db, job_id, "w2", limit=2, now=now)] == [3, 2]
    now += TTL + timedelta(seconds=1)  # and the next one died too
    with transaction(db) as session:
        expired = store.expire_leases(session, max_attempts=3, now=now)
    assert expired.failed == 1 and [c for _, c in expired.returned] == [second.chunk_id]
    with transaction(db) as session:
        (failed,) = store.failed_chunks(session, job_id=job_id)
        states = {c.id: c for c in store.item_chunks(session, item_id=failed.item_id)}
    assert failed.id == first.chunk_id and failed.lease_owner is None
    assert failed.error == (
        "gave up after 3 attempts: the renderer stopped before finishing; "
        "last error: EngineOutOfMemory: CUDA out of memory"
    )
    assert states[second.chunk_id].status == ChunkStatus.PENDING
    assert states[second.chunk_id].lease_owner is None


def test_release_hands_chunks_back_without_counting_an_attempt(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(2,))
    lease(db, job_id, "a")
    with transaction(db) as session:
        assert store.release_leases(session, owner="a") == 2
    again = lease(db, job_id, "b")
    assert [c.attempts for c in again] == [1, 1]


def test_renew_extends_only_live_leases_of_the_owner(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(2,))
    lease(db, job_id, "a", limit=1)
    lease(db, job_id, "b", limit=1)
    with transaction(db) as session:
        assert store.renew_leases(session, owner="a", ttl=TTL) == 1
        assert store.renew_leases(session, owner="nobody", ttl=TTL) == 0


def test_fail_chunk_retries_retryable_errors_then_gives_up(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(1,))
    outcomes = []
    for _ in range(3):
        (chunk,) = lease(db, job_id, "a")
        with transaction(db) as session:
            outcomes.append(
                store.fail_chunk(
                    session,
                    chunk_id=chunk.chunk_id,
                    owner="a",
                    error="S3 timeout",
                    retryable=True,
                    max_attempts=3,
                )
            )
    assert outcomes == [ChunkStatus.PENDING, ChunkStatus.PENDING, ChunkStatus.FAILED]


def test_permanent_failure_is_immediate_and_stale_owner_is_ignored(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(1,))
    (chunk,) = lease(db, job_id, "a")
    with transaction(db) as session:
        assert (
            store.fail_chunk(
                session,
                chunk_id=chunk.chunk_id,
                owner="b",
                error="x",
                retryable=False,
                max_attempts=3,
            )
            is None
        )
        assert (
            store.fail_chunk(
                session,
                chunk_id=chunk.chunk_id,
                owner="a",
                error="bad text",
                retryable=False,
                max_attempts=3,
            )
            == ChunkStatus.FAILED
        )


def test_items_are_claimed_once_when_their_last_chunk_is_done_then_the_job_once(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(2, 1))
    chunks = lease(db, job_id, "a")
    with transaction(db) as session:
        assert store.claim_ready_items(session, job_id=job_id) == []
    assert complete(db, chunks[0], "a") and complete(db, chunks[2], "a")
    with transaction(db) as session:
        items = store.job_items(session, job_id=job_id)
        # only the second item is complete; the first still has a leased chunk
        assert store.claim_ready_items(session, job_id=job_id) == [items[1].id]
        assert store.claim_ready_items(session, job_id=job_id) == []
        assert not store.claim_finalization(session, job_id=job_id)
    assert complete(db, chunks[1], "a")
    with transaction(db) as session:
        assert store.claim_ready_items(session, job_id=job_id, item_ids=[items[1].id]) == []
        assert store.claim_ready_items(session, job_id=job_id, item_ids=[items[0].id]) == [
            items[0].id
        ]
        assert store.items_in_assembly(session, job_id=job_id) == [items[0].id, items[1].id]
        assert not store.claim_finalization(session, job_id=job_id)  # items still assembling
        for item in items:
            assert store.complete_item(session, item_id=item.id, object_key="k", duration=1.0)
        assert store.claim_finalization(session, job_id=job_id)
        assert not store.claim_finalization(session, job_id=job_id)
        assert store.get_job(session, job_id).status == JobStatus.ASSEMBLING


def _finish_items(db: sessionmaker[Session], job_id: uuid.UUID, fail_first: bool) -> JobStatus:
    with transaction(db) as session:
        assert len(store.claim_ready_items(session, job_id=job_id)) == 2
        for index, item in enumerate(store.job_items(session, job_id=job_id)):
            if fail_first and index == 0:
                assert store.fail_item(session, item_id=item.id, error="chunk failed")
            else:
                assert store.complete_item(
                    session, item_id=item.id, object_key=f"{index}.wav", duration=2.0
                )
                assert not store.complete_item(
                    session, item_id=item.id, object_key="again", duration=9.0
                )
        assert store.claim_finalization(session, job_id=job_id)
        return store.finish_job(session, job_id=job_id, audio_seconds=4.0)


def test_job_finishes_done_when_every_item_is_done(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(1, 1))
    for chunk in lease(db, job_id, "a"):
        complete(db, chunk, "a")
    assert _finish_items(db, job_id, fail_first=False) == JobStatus.DONE
    with transaction(db) as session:
        job = store.get_job(session, job_id)
        assert job.finished_at is not None and job.audio_seconds == 4.0
        assert [i.status for i in store.job_items(session, job_id=job_id)] == [ItemStatus.DONE] * 2
        assert not store.cancel_job(session, job_id=job_id)  # final states never move


def test_job_with_a_failed_item_ends_partially_failed_and_can_be_retried(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(1, 1))
    first, second = lease(db, job_id, "a")
    with transaction(db) as session:
        store.fail_chunk(
            session,
            chunk_id=first.chunk_id,
            owner="a",
            error="boom",
            retryable=False,
            max_attempts=3,
        )
    complete(db, second, "a")
    assert _finish_items(db, job_id, fail_first=True) == JobStatus.PARTIALLY_FAILED
    with transaction(db) as session:
        assert "1 of 2 items failed" in (store.get_job(session, job_id).error or "")
        assert store.retry_failed(session, job_id=job_id) == 1
        assert store.get_job(session, job_id).status == JobStatus.RENDERING
    (again,) = lease(db, job_id, "b")
    assert again.chunk_id == first.chunk_id and again.attempts == 1


def test_cancel_returns_leased_chunks_and_hides_job_from_resume(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(2,), fingerprint="a" * 64)
    lease(db, job_id, "a")
    with transaction(db) as session:
        assert store.find_resumable_job(session, fingerprint="a" * 64).id == job_id  # type: ignore[union-attr]
        assert store.cancel_job(session, job_id=job_id)
        assert store.job_progress(session, job_id=job_id).chunks_leased == 0
        assert store.find_resumable_job(session, fingerprint="a" * 64) is None


def test_find_rendered_serves_identical_chunks_across_jobs(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(1,))
    (chunk,) = lease(db, job_id, "a")
    with transaction(db) as session:
        assert store.find_rendered_many(session, content_hashes=[chunk.content_hash]) == {}
    complete(db, chunk, "a")
    with transaction(db) as session:
        found = store.find_rendered_many(session, content_hashes=[chunk.content_hash, "x" * 64])
        assert set(found) == {chunk.content_hash}
        audio = found[chunk.content_hash]
        assert (audio.object_key, audio.duration, audio.sample_rate) == (
            "k",
            1.5,
            22050,
        )


def test_get_job_by_prefix_and_clear_errors(db: sessionmaker[Session]) -> None:
    job_id = new_job(db)
    with transaction(db) as session:
        assert store.get_job(session, str(job_id)[:8]).id == job_id
        assert store.get_job(session, str(job_id).upper()).id == job_id
        with pytest.raises(NotFoundError):
            store.get_job(session, str(uuid.uuid4()))
        with pytest.raises(InputError, match="not a job id"):
            store.get_job(session, "zz")


def test_timestamps_come_back_timezone_aware(db: sessionmaker[Session]) -> None:
    job_id = new_job(db)
    with transaction(db) as session:
        job = store.get_job(session, job_id)
        assert job.created_at.tzinfo is not None
        assert abs((utcnow() - job.created_at).total_seconds()) < 60
