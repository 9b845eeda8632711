"""Leases follow the database's clock, not each machine's (issue 16, defect 10). Runs on
SQLite here and on PostgreSQL in tests/integration/test_assembly_postgres.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

import pipeline.state.chunks as chunk_state
import pipeline.state.reconcile as reconcile
from pipeline.state import store
from pipeline.state.db import transaction
from tests.support.state import TTL, lease, new_job


def test_a_worker_whose_clock_runs_ahead_cannot_steal_a_live_lease(
    db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = new_job(db, chunks_per_item=(2,))
    assert len(lease(db, job_id, "honest")) == 2  # five minutes, by the database's clock
    # This process's clock now runs an hour fast (a worker with a bad NTP sync).
    ahead = datetime.now(UTC) + timedelta(hours=1)
    monkeypatch.setattr(chunk_state, "utcnow", lambda: ahead)
    monkeypatch.setattr(reconcile, "utcnow", lambda: ahead, raising=False)
    assert lease(db, job_id, "fast-clock") == []  # before: both chunks taken from "honest"
    with transaction(db) as session:
        due = reconcile.find_due_work(
            session,
            grace=timedelta(hours=2),
            group_size=4,
            max_attempts=3,
            include_idle_pending=False,
        )
        assert due.render == {}  # nothing expired: no lease handed back
        assert store.renew_leases(session, owner="honest", ttl=TTL) == 2  # still live
