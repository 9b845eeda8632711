"""Chaos: messages delivered twice at once, replayed after the job ended, and lost with a
broker restart. The database decides; duplicates change nothing, losses only delay."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.state import store
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.models import Chunk, ChunkStatus
from tests.conftest import free_port
from tests.e2e.test_worker_stop import (
    TOTAL,
    _reconciler,
    _settings,
    _state,
    _submit,
    _wait_until_leased,
    _worker,
)
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.e2e


def _chunks(env: dict[str, str], job_id: uuid.UUID) -> list[Chunk]:
    factory = session_factory(create_db_engine(env["VOICEBATCH_DATABASE_URL"]))
    with transaction(factory) as session:
        return [
            c
            for item in store.job_items(session, job_id=job_id)
            for c in store.item_chunks(session, item_id=item.id)
        ]


def _wait_done(env: dict[str, str], job_id: uuid.UUID, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while _state(env, job_id)[0] < TOTAL:
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def _publish_again(env: dict[str, str], job_id: uuid.UUID) -> None:
    settings = _settings(env)
    ids = [c.id for c in _chunks(env, job_id)]
    size = settings.task_chunks
    CeleryDispatcher(create_celery(settings)).render(
        job_id, [ids[i : i + size] for i in range(0, len(ids), size)]
    )


def test_the_same_messages_twice_at_once_and_again_later_change_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = _worker(env | {"VOICEBATCH_TEST_ENGINE_DELAY_MS": "300"}, log)
    try:
        job_id = _submit(env)
        _publish_again(env, job_id)  # every message now twice in the queue
        _wait_done(env, job_id, log)
        first = {c.id: (c.attempts, c.updated_at, c.object_key) for c in _chunks(env, job_id)}
        # each chunk was leased (and rendered) by exactly one copy of its message
        assert {attempts for attempts, _, _ in first.values()} == {1}
        _publish_again(env, job_id)  # a replay, long after
        time.sleep(3)
        assert {
            c.id: (c.attempts, c.updated_at, c.object_key) for c in _chunks(env, job_id)
        } == first
        assert {c.status for c in _chunks(env, job_id)} == {ChunkStatus.DONE}
    finally:
        worker.terminate()
        worker.wait(30)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    command = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    yield port, command


def test_a_broker_restart_that_loses_every_queued_message_only_delays_the_job(
    env: dict[str, str], tmp_path: Path, private_redis: tuple[int, list[str]]
) -> None:
    port, command = private_redis
    redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    env = env | {"VOICEBATCH_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    time.sleep(0.5)
    log = tmp_path / "worker.log"
    worker = _worker(env | {"VOICEBATCH_TEST_ENGINE_DELAY_MS": "400"}, log)
    reconciler: subprocess.Popen[bytes] | None = None
    try:
        job_id = _submit(env)
        _wait_until_leased(env, job_id, worker, log)
        redis_process.kill()  # no persistence: the queued messages are gone
        redis_process.wait()
        redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        reconciler = _reconciler(env, tmp_path / "reconcile.log", grace=3)
        _wait_done(env, job_id, log, seconds=120)
        assert {c.status for c in _chunks(env, job_id)} == {ChunkStatus.DONE}
        assert "chunks republished" in (tmp_path / "reconcile.log").read_text()
    finally:
        for process in (worker, reconciler):
            if process is not None:
                process.terminate()
                process.wait(30)
        redis_process.kill()
        redis_process.wait()
