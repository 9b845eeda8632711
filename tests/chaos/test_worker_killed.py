"""Chaos: a render worker is killed with SIGKILL mid-batch. Its leases run out, the
reconciler publishes the chunks again (Redis would redeliver the message only after
its visibility timeout), another worker renders them, and the job finishes with every
chunk done exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.state import store
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.models import ChunkStatus
from tests.conftest import need_service
from tests.e2e.stack import VOICEBATCH, rabbit_vhost
from tests.e2e.test_worker_stop import (
    TOTAL,
    _reconciler,
    _state,
    _submit,
    _wait_until_leased,
    _worker,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_env(request: pytest.FixtureRequest, env: dict[str, str]) -> Iterator[dict[str, str]]:
    if request.param == "redis":
        yield env
        return
    need_service("RabbitMQ", "127.0.0.1", 5672)
    vhost, cleanup = rabbit_vhost()
    yield env | {"VOICEBATCH_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    for command in cleanup:
        subprocess.run(command, capture_output=True, timeout=60)


def test_a_killed_render_worker_loses_nothing(broker_env: dict[str, str], tmp_path: Path) -> None:
    # Redis redelivers the victim's message only after its visibility timeout, so the
    # reconciler republishes the chunks; RabbitMQ redelivers at once, and the survivor
    # waits for the victim's leases to run out before taking the chunks over.
    env = broker_env | {"VOICEBATCH_LEASE_SECONDS": "5", "VOICEBATCH_MAX_ATTEMPTS": "3"}
    victim = _worker(env, tmp_path / "victim.log", VOICEBATCH_TEST_ENGINE_DELAY_MS="1000")
    job_id = _submit(env)
    _wait_until_leased(env, job_id, victim, tmp_path / "victim.log")
    victim.send_signal(signal.SIGKILL)  # no goodbye: leases and an unacknowledged message
    victim.wait(10)
    held = _state(env, job_id)[1]
    assert held > 0
    survivor = _worker(env, tmp_path / "survivor.log")
    reconciler = _reconciler(env, tmp_path / "reconcile.log", grace=2)
    try:
        deadline = time.monotonic() + 90
        while _state(env, job_id)[0] < TOTAL:
            assert time.monotonic() < deadline, (tmp_path / "survivor.log").read_text()[-3000:]
            time.sleep(0.3)
    finally:
        for process in (survivor, reconciler):
            process.terminate()
            process.wait(30)
    factory = session_factory(create_db_engine(env["VOICEBATCH_DATABASE_URL"]))
    with transaction(factory) as session:
        chunks = [
            c
            for item in store.job_items(session, job_id=uuid.UUID(str(job_id)))
            for c in store.item_chunks(session, item_id=item.id)
        ]
    assert len(chunks) == TOTAL and {c.status for c in chunks} == {ChunkStatus.DONE}
    assert all(c.lease_owner is None for c in chunks)
    # the chunks the victim held were taken over: one attempt more, and no more than that
    assert sorted(c.attempts for c in chunks).count(2) >= 1
    assert max(c.attempts for c in chunks) <= 2
    if "amqp" not in env["VOICEBATCH_BROKER_URL"]:
        assert "chunks republished" in (tmp_path / "reconcile.log").read_text()


def test_killing_only_the_pool_child_loses_nothing(env: dict[str, str], tmp_path: Path) -> None:
    """prefork: the task's child process dies, the worker lives on and starts a new child;
    the message comes back (reject on worker lost) and the chunks after their lease."""
    env = env | {"VOICEBATCH_LEASE_SECONDS": "5", "VOICEBATCH_MAX_ATTEMPTS": "3"}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [VOICEBATCH, "worker", "--queues", "render", "--pool", "prefork", "--concurrency", "1"],
        env=env | {"VOICEBATCH_TEST_ENGINE_DELAY_MS": "700"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    reconciler = _reconciler(env, tmp_path / "reconcile.log")
    try:
        job_id = _submit(env)
        _wait_until_leased(env, job_id, worker, log)
        children = subprocess.run(
            ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert children, "a prefork worker has a pool child"
        for child in children:
            os.kill(int(child), signal.SIGKILL)
        deadline = time.monotonic() + 90
        while _state(env, job_id)[0] < TOTAL:
            assert worker.poll() is None, "the worker itself survives its child"
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        assert "SIGKILL" in log.read_text()  # Celery saw its child die of the signal
        done, leased, owners = _state(env, job_id)
        assert (done, leased, owners) == (TOTAL, 0, [])
    finally:
        for process in (worker, reconciler):
            process.terminate()
            process.wait(30)
