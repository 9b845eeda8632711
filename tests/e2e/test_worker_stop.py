"""Stopping a render worker: SIGTERM, or a spot notice from the metadata server. It stops
taking work, hands back what it cannot finish within its grace period, and exits; another
worker then finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.engines import engine_info
from pipeline.state import store
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.submit import document_from_chapters, submit_job
from tests.conftest import need_service
from tests.e2e.stack import VOICEBATCH
from tests.integration.conftest import PostgresAdmin, pg_url
from tests.spot_server import FakeMetadata
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.e2e
BROKER = "redis://127.0.0.1:6379/8"
TOTAL = 9  # the spoken heading and eight sentences, one chunk each


@pytest.fixture
def env(pg_admin: PostgresAdmin, pg_template: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    database = pg_admin.create(template=pg_template)
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    yield base | {
        "VOICEBATCH_DATABASE_URL": pg_url(database),
        "VOICEBATCH_BROKER_URL": BROKER,
        "VOICEBATCH_STORAGE_URL": str(tmp_path / "objects"),
        "VOICEBATCH_DATA_DIR": str(tmp_path / "data"),
        "VOICEBATCH_ENGINE": "test-tone",
        "VOICEBATCH_TASK_CHUNKS": "4",
        "VOICEBATCH_CHUNK_MAX_CHARS": "40",
        "VOICEBATCH_WORKER_GRACE_SECONDS": "4",
    }
    pg_admin.drop(database)


def _settings(env: dict[str, str]) -> Settings:
    """The Settings the worker processes build from `env`."""
    return load_settings(
        **{k[11:].lower(): v for k, v in env.items() if k.startswith("VOICEBATCH_")}
    )


def _submit(env: dict[str, str], sentences: list[str] | None = None) -> uuid.UUID:
    """A one-chapter job, one chunk a sentence (eight by default), published to the broker."""
    settings = _settings(env)
    factory = session_factory(create_db_engine(settings.resolved_database_url))
    sentences = sentences or [f"Sentence number {n} is here." for n in range(8)]
    submitted = submit_job(
        factory,
        document_from_chapters("Stop", [("One", "\n\n".join(sentences))]),
        engine=engine_info(settings),
        settings=settings,
        kind="book",
        owner_id=uuid.uuid4(),
        idempotency_key=None,
        output_base=settings.resolved_storage_url,
    )
    CeleryDispatcher(create_celery(settings)).render(submitted.job_id, submitted.chunk_groups)
    return submitted.job_id


def _wait_until_leased(
    env: dict[str, str], job_id: uuid.UUID, worker: subprocess.Popen[bytes], log: Path
) -> None:
    """Until the worker holds chunks of the job: caught mid-batch."""
    deadline = time.monotonic() + 60
    while _state(env, job_id)[1] == 0:
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def _state(env: dict[str, str], job_id: uuid.UUID) -> tuple[int, int, list[str]]:
    factory = session_factory(create_db_engine(env["VOICEBATCH_DATABASE_URL"]))
    with transaction(factory) as session:
        progress = store.job_progress(session, job_id=job_id)
        owners = store.lease_owners(session, job_id=job_id)
    return progress.chunks_done, progress.chunks_leased, owners


def _worker(env: dict[str, str], log: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [VOICEBATCH, "worker", "--queues", "render", "--concurrency", "2"],
        env=env | extra,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _reconciler(env: dict[str, str], log: Path, grace: float = 2) -> subprocess.Popen[bytes]:
    """`voicebatch reconcile` every second, as a deployment runs it."""
    return subprocess.Popen(
        [VOICEBATCH, "reconcile", "--interval", "1", "--grace", str(grace)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _finish_with_a_fresh_worker(env: dict[str, str], job_id: uuid.UUID, log: Path) -> None:
    helper = _worker(env, log)
    try:
        deadline = time.monotonic() + 60
        while _state(env, job_id)[0] < TOTAL:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        helper.terminate()
        helper.wait(30)


@pytest.mark.parametrize("how", ["sigterm", "aws-notice", "gcp-notice"])
def test_a_stopped_worker_hands_back_its_chunks_before_its_grace_ends(
    env: dict[str, str], tmp_path: Path, how: str
) -> None:
    metadata = FakeMetadata()
    extra = {"VOICEBATCH_TEST_ENGINE_DELAY_MS": "1500"}  # 4 chunks a message: 6 s > 4 s grace
    if how != "sigterm":
        extra |= {
            "VOICEBATCH_SPOT_PROVIDER": how.split("-")[0],
            "VOICEBATCH_SPOT_METADATA_URL": metadata.url,
            "VOICEBATCH_SPOT_POLL_SECONDS": "0.2",
        }
    log = tmp_path / "worker.log"
    worker = _worker(env, log, **extra)
    try:
        job_id = _submit(env)
        _wait_until_leased(env, job_id, worker, log)
        stopped = time.monotonic()
        if how == "sigterm":
            worker.send_signal(signal.SIGTERM)
        elif how == "aws-notice":
            metadata.aws_action = '{"action": "terminate", "time": "2026-11-25T07:00:00Z"}'
        else:
            metadata.gcp_preempted = True
        worker.wait(30)
        took = time.monotonic() - stopped
        done, leased, owners = _state(env, job_id)
        # out before the grace period ran out (plus start-up of the shutdown), holding nothing:
        # no chunk waits for a 300 s lease to expire
        assert took < 4 + 6, (took, log.read_text()[-3000:])
        assert leased == 0 and owners == [], log.read_text()[-3000:]
        assert done < TOTAL
        if how != "sigterm":
            assert "spot" in log.read_text() and "notice" in log.read_text()
        _finish_with_a_fresh_worker(env, job_id, tmp_path / "helper.log")
        assert _state(env, job_id)[0] == TOTAL
    finally:
        if worker.poll() is None:
            worker.kill()
        metadata.close()


def test_a_stopped_worker_finishes_a_batch_that_fits_in_its_grace_period(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = env | {"VOICEBATCH_WORKER_GRACE_SECONDS": "20"}
    log = tmp_path / "worker.log"
    worker = _worker(env, log, VOICEBATCH_TEST_ENGINE_DELAY_MS="1000")  # 4 s a batch
    try:
        job_id = _submit(env)
        _wait_until_leased(env, job_id, worker, log)
        held = _state(env, job_id)[1]
        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(40)
        took = time.monotonic() - stopped
        done, leased, owners = _state(env, job_id)
        # it finished what it held (well inside 20 s) rather than handing it back
        assert took < 20, log.read_text()[-3000:]
        assert done >= held and leased == 0 and owners == []
        assert "released" not in log.read_text()
        _finish_with_a_fresh_worker(env, job_id, tmp_path / "helper.log")
        assert _state(env, job_id)[0] == TOTAL
    finally:
        if worker.poll() is None:
            worker.kill()
