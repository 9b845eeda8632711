"""The state tests of tests/unit/test_state.py, run on PostgreSQL, plus concurrency on it.

The star import collects every unit test in this module; pytest then resolves their `db`
fixture from tests/integration/conftest.py, a migrated PostgreSQL database per test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from pipeline.state import store
from pipeline.state.db import transaction
from tests.support.state import TTL, lease, new_job
from tests.unit.test_state import *  # noqa: F403


def test_state_tests_here_run_on_postgresql(db: sessionmaker[Session]) -> None:
    with db() as session:
        assert session.get_bind().dialect.name == "postgresql"
        assert (
            session.execute(text("SELECT current_database()"))
            .scalar_one()
            .startswith("voicebatch_it_")
        )


def test_each_test_gets_a_database_of_its_own(db: sessionmaker[Session]) -> None:
    # Runs after tests that created jobs: it must see none of their rows.
    with transaction(db) as session:
        assert store.list_jobs(session) == []
    new_job(db)
    with transaction(db) as session:
        assert len(store.list_jobs(session)) == 1


def _lease_until_done(
    db: sessionmaker[Session],
    job_id: uuid.UUID,
    owner: str,
    start: threading.Barrier,
    leased: list[uuid.UUID],
) -> None:
    start.wait()
    while True:
        with transaction(db) as session:
            got = store.lease_chunks(
                session, job_id=job_id, owner=owner, limit=3, ttl=TTL, max_attempts=3
            )
        leased.extend(chunk.chunk_id for chunk in got)
        if got:
            continue
        with transaction(db) as session:
            pending = store.job_progress(session, job_id=job_id).chunks_pending
        if pending == 0:
            return  # nothing free right now: others hold the rest


def test_concurrent_leasing_from_threads_never_hands_out_a_chunk_twice(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(50, 50, 50, 50))
    owners = [f"worker-{n}" for n in range(4)]
    start = threading.Barrier(len(owners))
    leased: dict[str, list[uuid.UUID]] = {owner: [] for owner in owners}
    threads = [
        threading.Thread(
            target=_lease_until_done,
            args=(db, job_id, owner, start, leased[owner]),
        )
        for owner in owners
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    every = [chunk_id for ids in leased.values() for chunk_id in ids]
    duplicates = [chunk_id for chunk_id, n in Counter(every).items() if n > 1]
    assert duplicates == []
    with transaction(db) as session:
        all_ids = {
            c.id
            for item in store.job_items(session, job_id=job_id)
            for c in store.item_chunks(session, item_id=item.id)
        }
        progress = store.job_progress(session, job_id=job_id)
    assert len(all_ids) == 200 and set(every) == all_ids
    assert progress.chunks_leased == 200
    # Each owner's leases are recorded as its own: completing them all moves 200 to done.
    for owner, ids in leased.items():
        with transaction(db) as session:
            for chunk_id in ids:
                assert store.complete_chunk(
                    session,
                    chunk_id=chunk_id,
                    owner=owner,
                    object_key="k",
                    duration=1.0,
                    sample_rate=22050,
                )
    with transaction(db) as session:
        assert store.job_progress(session, job_id=job_id).chunks_done == 200


def _wait_until_blocked_or_done(db: sessionmaker[Session], thread: threading.Thread) -> None:
    """Wait until `thread` waits on a row lock in this database, or has finished."""
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        with db() as session:
            waiting = session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.01)


def test_a_lease_that_loses_a_race_takes_the_next_free_chunks(db: sessionmaker[Session]) -> None:
    job_id = new_job(db, chunks_per_item=(10,))
    second: list[store.ChunkLease] = []
    with transaction(db) as session:
        first = store.lease_chunks(
            session, job_id=job_id, owner="a", limit=3, ttl=TTL, max_attempts=3
        )
        racer = threading.Thread(target=lambda: second.extend(lease(db, job_id, "b", limit=3)))
        racer.start()
        _wait_until_blocked_or_done(db, racer)
    racer.join(timeout=10)
    assert [c.seq for c in first] == [0, 1, 2]
    assert [c.seq for c in second] == [3, 4, 5]  # today: [] although 7 chunks are pending
