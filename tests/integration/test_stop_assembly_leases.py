"""An assembler stopped in the middle of an item hands its assembly lease back at its
cut-off, as a render worker hands back its chunks: a real `voicebatch worker` on the
assemble queue (threads, and prefork, whose pool child is cut off itself), whose
assembly is slower than its grace, gets SIGTERM. Its lease is released with the attempt
given back, and its requeued message is assembled by the next worker at once, not after
the lease (five minutes) ran out."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import update

from pipeline.config import Settings
from pipeline.plan.documents import document_from_chapters
from pipeline.render.leases import worker_id
from pipeline.state import store
from pipeline.state.assembly import Take, take_item_assembly, take_job_finalization
from pipeline.state.cut_off import process_owner_prefix, release_process_assemblies
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.models import Item, ItemStatus, Job, JobStatus
from tests.support.services import private_redis_url
from tests.support.stack import VOICEBATCH, stop_processes
from tests.support.state import TTL, new_job
from tests.support.workers import render_ids, submit, tone_settings
from workers.app import create_celery
from workers.context import WorkerResources
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.integration
BROKER_DB = 9
GRACE = 2  # seconds; the held assembly sleeps far longer (VOICEBATCH_ASSEMBLY_DELAY_MS)


def _item_in_assembly(settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """A one-chapter book, rendered here: its item is claimed for assembly."""
    resources = WorkerResources.open(settings)
    try:
        parsed = document_from_chapters("Book", [("One", "A short chapter to assemble.")])
        submitted = submit(resources.factory, settings, parsed)
        ids = [c for group in submitted.chunk_groups for c in group]
        render_ids(resources, settings, submitted.job_id, ids)
        with transaction(resources.factory) as session:
            (item,) = store.job_items(session, job_id=submitted.job_id)
            assert item.status == ItemStatus.ASSEMBLING
            return submitted.job_id, item.id
    finally:
        resources.factory.kw["bind"].dispose()


def _worker(env: dict[str, str], log: Path, pool: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [VOICEBATCH, "worker", "--queues", "assemble", "--pool", pool, "--concurrency", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
        )


def _until(what: str, check: Callable[[], object], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_an_assembler_cut_off_by_its_grace_hands_its_lease_to_the_next_at_once(
    pg_migrated_url: str, tmp_path: Path, pool: str
) -> None:
    broker = private_redis_url(BROKER_DB)
    redis.Redis.from_url(broker).flushdb()
    values = {
        "database_url": pg_migrated_url,
        "broker_url": broker,
        "lease_seconds": "300",
        "worker_grace_seconds": str(GRACE),
    }
    settings = tone_settings(tmp_path, **values)
    job_id, item_id = _item_in_assembly(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env |= {f"VOICEBATCH_{k.upper()}": str(v) for k, v in values.items()}
    env |= {
        "VOICEBATCH_ENGINE": "test-tone",
        "VOICEBATCH_DATA_DIR": str(settings.data_dir),
        "VOICEBATCH_STORAGE_URL": str(tmp_path / "objects"),
        "VOICEBATCH_OUTPUT_FORMAT": "wav",
    }
    factory = WorkerResources.open(settings).factory

    def item() -> Item:
        with transaction(factory) as session:
            row = session.get(Item, item_id)
            assert row is not None
            session.expunge(row)
            return row

    celery = create_celery(settings)
    CeleryDispatcher(celery).assemble(job_id, [item_id])
    celery.close()
    slow = _worker(env | {"VOICEBATCH_ASSEMBLY_DELAY_MS": "600000"}, tmp_path / "slow.log", pool)
    try:
        _until(
            "the slow assembler takes the item",
            lambda: item().assembly_owner,
            tmp_path / "slow.log",
            120,
        )
        held = item()
        assert held.assembly_attempts == 1
        slow.send_signal(signal.SIGTERM)
        slow.wait(timeout=GRACE + 30)
    finally:
        stop_processes([slow])

    after = item()
    assert (after.assembly_owner, after.assembly_expires_at, after.assembly_attempts) == (
        None,
        None,
        0,
    ), (
        f"the stopped assembler's lease ({held.assembly_owner}) was left to run out at "
        f"{after.assembly_expires_at}\n{(tmp_path / 'slow.log').read_text()[-3000:]}"
    )
    # the message its cut-off requeued is the next assembler's, now
    next_ = _worker(env, tmp_path / "next.log", pool)
    try:
        _until(
            "the next assembler finishes the item",
            lambda: item().status == ItemStatus.DONE,
            tmp_path / "next.log",
            120,
        )
    finally:
        stop_processes([next_])
    factory.kw["bind"].dispose()


def test_only_this_process_s_unfinished_assemblies_are_handed_back(pg_migrated_url: str) -> None:
    assert worker_id().startswith(process_owner_prefix())  # the owners assemblers take
    factory = session_factory(create_db_engine(pg_migrated_url))
    job_id = new_job(factory)
    mine, other = "h_st:12:", "hXst:12:"  # `_` is no wildcard: hXst is another host
    with transaction(factory) as session:
        session.execute(update(Item).where(Item.job_id == job_id).values(status="assembling"))
        session.execute(update(Job).where(Job.id == job_id).values(status="assembling"))
        first, second = (item.id for item in store.job_items(session, job_id=job_id))
        for row, owner in ((first, mine), (second, other)):
            took = take_item_assembly(
                session, item_id=row, owner=f"{owner}a", ttl=TTL, max_attempts=3
            )
            assert took == Take.TAKEN
        took = take_job_finalization(
            session, job_id=job_id, owner=f"{mine}b", ttl=TTL, max_attempts=3
        )
        assert took == Take.TAKEN
    with transaction(factory) as session:
        assert release_process_assemblies(session, owner_prefix=mine) == 2
    with transaction(factory) as session:
        rows = {
            row.id: (row.assembly_owner, row.assembly_attempts)
            for row in (session.get(Item, first), session.get(Item, second))
            if row is not None
        }
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.assembly_owner, job.assembly_attempts, job.status) == (
            None,
            0,
            JobStatus.ASSEMBLING,
        )
    assert rows == {first: (None, 0), second: (f"{other}a", 1)}
    # an assembly that recorded its result is not handed on: nothing is left to release
    with transaction(factory) as session:
        assert (
            take_item_assembly(session, item_id=first, owner=f"{mine}c", ttl=TTL, max_attempts=3)
            == Take.TAKEN
        )
        assert store.complete_item(
            session, item_id=first, object_key=None, duration=1.0, owner=f"{mine}c"
        )
    with transaction(factory) as session:
        assert release_process_assemblies(session, owner_prefix=mine) == 0
    factory.kw["bind"].dispose()
