"""Lease heartbeats: a healthy renderer keeps its chunks; a stopped one loses them."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pipeline.render.leases import LeaseHeartbeat
from pipeline.state import store
from pipeline.state.db import transaction
from tests.support.state import complete, lease, new_job


def test_a_beating_renderer_keeps_its_leases_and_a_stopped_one_loses_them(
    db: sessionmaker[Session],
) -> None:
    job_id = new_job(db, chunks_per_item=(2,))
    second = timedelta(seconds=2)
    with transaction(db) as session:
        mine = store.lease_chunks(
            session, job_id=job_id, owner="a", limit=10, ttl=second, max_attempts=3
        )
    assert len(mine) == 2
    with LeaseHeartbeat(db, "a", second, interval=0.2) as heartbeat:
        time.sleep(2.8)  # well past the 2 s the leases were taken for
        assert lease(db, job_id, "b") == []  # still alive: nobody may take them
    assert heartbeat.beats >= 6
    time.sleep(2.3)  # no more beats: the leases run out
    taken = lease(db, job_id, "b")
    assert {c.chunk_id for c in taken} == {c.chunk_id for c in mine}
    assert not complete(db, mine[0], "a")  # the stale owner can no longer commit
    assert complete(db, taken[0], "b")


def test_an_expired_lease_nobody_took_over_still_completes_once(
    db: sessionmaker[Session],
) -> None:
    """complete_chunk checks the owner, not the expiry (its docstring says so): work done
    past the expiry is kept when nobody took the chunk over, and counted once."""
    job_id = new_job(db, chunks_per_item=(1,))
    with transaction(db) as session:
        (mine,) = store.lease_chunks(
            session,
            job_id=job_id,
            owner="a",
            limit=1,
            ttl=timedelta(milliseconds=1),
            max_attempts=3,
        )
    time.sleep(0.05)  # expired, and nobody leased it again
    assert complete(db, mine, "a")
    assert not complete(db, mine, "a")  # done already: not counted twice
    assert lease(db, job_id, "b") == []
