"""Chaos: a chunk whose rendering always kills its process. It is failed after
max_attempts with the reason, the other chunks (even those in its batch) are done, the
job ends partially_failed with a report, and nothing loops."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pipeline.state import store
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.models import ChunkStatus, JobStatus
from tests.e2e.stack import VOICEBATCH
from tests.e2e.test_worker_stop import _reconciler, _submit, _worker

pytestmark = pytest.mark.e2e


def test_a_chunk_that_always_crashes_its_worker_fails_alone_and_nothing_loops(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = env | {
        "VOICEBATCH_LEASE_SECONDS": "5",
        "VOICEBATCH_MAX_ATTEMPTS": "3",
        "VOICEBATCH_TEST_ENGINE_CRASH_ON": "POISON",
    }
    sentences = [f"Healthy sentence number {n}." for n in range(7)]
    sentences.insert(2, "This one is POISON to the engine.")
    job_id = _submit(env, sentences)
    factory = session_factory(create_db_engine(env["VOICEBATCH_DATABASE_URL"]))
    reconciler = _reconciler(env, tmp_path / "reconcile.log", grace=2)
    assembler = subprocess.Popen(
        [VOICEBATCH, "worker", "--queues", "assemble", "--concurrency", "1"],
        env=env,
        stdout=(tmp_path / "assemble.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    restarts = 0
    worker = _worker(env, tmp_path / "render-0.log")
    try:
        deadline = time.monotonic() + 150
        while True:  # a supervisor: what systemd or Kubernetes does for a dead worker
            with transaction(factory) as session:
                status = store.get_job(session, job_id).status
            if status.final:
                break
            assert time.monotonic() < deadline, (tmp_path / "reconcile.log").read_text()[-2000:]
            if worker.poll() is not None:
                restarts += 1
                worker = _worker(env, tmp_path / f"render-{restarts}.log")
            time.sleep(0.3)
    finally:
        for process in (worker, reconciler, assembler):
            process.terminate()
            process.wait(30)
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        chunks = [
            c
            for item in store.job_items(session, job_id=job.id)
            for c in store.item_chunks(session, item_id=item.id)
        ]
        assert job.status == JobStatus.FAILED  # its only chapter could not be assembled
        assert job.error and "1 chunks could not be rendered" in job.error
    poison = [c for c in chunks if "POISON" in c.text]
    assert len(poison) == 1 and poison[0].status == ChunkStatus.FAILED
    assert "gave up after 3 attempts" in (poison[0].error or "")
    healthy = [c for c in chunks if "POISON" not in c.text]
    assert {c.status for c in healthy} == {ChunkStatus.DONE}
    # the crash took down each worker that leased it, and nothing more: 3 attempts
    assert restarts == 3 and poison[0].attempts == 3
