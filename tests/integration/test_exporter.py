"""The metrics exporter against real PostgreSQL, a Redis (or RabbitMQ) broker and an S3
server: queue depth and the oldest message's age read without consuming, jobs by status,
chunk latency and job turnaround from the database, dependency probes, and a one-line
refusal to start against a broker that does not answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings
from pipeline.state.db import transaction
from pipeline.state.models import JobStatus
from tests.support.services import free_port, need_service, private_redis_url
from tests.support.stack import rabbit_vhost
from tests.support.state import complete, lease
from tests.support.workers import new_job
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher
from workers.exporter import Exporter

VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")
# The test settings' engine's render queue (one per engine: workers.celery_config).
RENDER = "render.test-tone"


def samples(exporter: Exporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the exporter serves, by (name, sorted labels)."""
    text = generate_latest(exporter.metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def redis_settings(s3_settings: Settings, pg_migrated_url: str) -> Iterator[Settings]:
    import redis

    redis.Redis.from_url(private_redis_url(3)).flushdb()
    yield s3_settings.model_copy(
        update={
            "database_url": pg_migrated_url,
            "broker_url": private_redis_url(3),
            "task_chunks": 2,
        }
    )
    redis.Redis.from_url(private_redis_url(3)).flushdb()


def test_queue_depth_and_the_oldest_message_age_on_redis_without_consuming(
    redis_settings: Settings,
) -> None:
    import redis

    exporter = Exporter(redis_settings, lag_seconds=0)
    exporter.check()
    exporter.poll()
    assert samples(exporter)[("voicebatch_queue_depth", (("queue", RENDER),))] == 0
    assert (
        samples(exporter)[("voicebatch_queue_oldest_message_age_seconds", (("queue", RENDER),))]
        == 0
    )

    dispatcher = CeleryDispatcher(create_celery(redis_settings))
    job = uuid.uuid4()
    dispatcher.render(job, [[uuid.uuid4()], [uuid.uuid4()], [uuid.uuid4()]])
    time.sleep(1.5)
    dispatcher.render(job, [[uuid.uuid4()]])
    exporter.poll()
    found = samples(exporter)
    assert found[("voicebatch_queue_depth", (("queue", RENDER),))] == 4
    age = found[("voicebatch_queue_oldest_message_age_seconds", (("queue", RENDER),))]
    assert 1.5 <= age < 60  # the first message's age, not the last one's
    assert found[("voicebatch_queue_depth", (("queue", "assemble"),))] == 0
    # read, not consumed
    assert redis.Redis.from_url(private_redis_url(3)).llen(RENDER) == 4
    for dependency in ("database", "broker", "storage"):
        assert found[("voicebatch_dependency_up", (("dependency", dependency),))] == 1


def test_jobs_by_status_chunk_latency_and_turnaround_come_from_the_database(
    redis_settings: Settings,
) -> None:
    app = create_celery(redis_settings)
    exporter = Exporter(redis_settings, lag_seconds=0)
    job = new_job(app)  # its render messages never published: the reconciler's to find
    exporter.poll()
    found = samples(exporter)
    jobs = {labels[0][1]: n for (name, labels), n in found.items() if name == "voicebatch_jobs"}
    assert jobs == {status.value: int(status == JobStatus.PENDING) for status in JobStatus}
    pending = found[("voicebatch_chunks_open", (("status", "pending"),))]
    assert pending >= 2
    # nothing published, so the queue is empty whatever the database holds
    assert found[("voicebatch_queue_depth", (("queue", RENDER),))] == 0

    db = app.context.resources.factory
    leased = lease(db, job, "w1", limit=2)
    for chunk in leased:
        assert complete(db, chunk, "w1")
    time.sleep(0.05)
    exporter.poll()
    found = samples(exporter)
    assert found[("voicebatch_chunk_latency_seconds_count", ())] == 2
    assert found[("voicebatch_chunks_open", (("status", "pending"),))] == pending - 2
    exporter.poll()  # each finished chunk is counted once
    assert samples(exporter)[("voicebatch_chunk_latency_seconds_count", ())] == 2

    from pipeline.state import store

    with transaction(db) as session:
        assert store.cancel_job(session, job_id=job)
    exporter.poll()
    found = samples(exporter)
    turnaround = ("voicebatch_job_turnaround_seconds_count", (("status", "cancelled"),))
    assert found[turnaround] == 1
    assert found[("voicebatch_jobs", (("status", "cancelled"),))] == 1
    assert found[("voicebatch_reconciler_lock_held", ())] == 0  # no reconciler runs here


def test_queue_depth_on_rabbitmq_with_the_age_from_the_database(
    s3_settings: Settings, pg_migrated_url: str
) -> None:
    need_service("RabbitMQ", "127.0.0.1", 5672)
    vhost, cleanup = rabbit_vhost()
    try:
        settings = s3_settings.model_copy(
            update={
                "database_url": pg_migrated_url,
                "broker_url": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                "task_chunks": 2,
            }
        )
        app = create_celery(settings)
        exporter = Exporter(settings, lag_seconds=0)
        exporter.check()
        exporter.poll()  # the queues do not exist yet: depth 0
        assert samples(exporter)[("voicebatch_queue_depth", (("queue", RENDER),))] == 0
        job = new_job(app)
        time.sleep(1.2)
        CeleryDispatcher(app).render(job, [[uuid.uuid4()], [uuid.uuid4()]])
        exporter.poll()
        found = samples(exporter)
        assert found[("voicebatch_queue_depth", (("queue", RENDER),))] == 2
        # RabbitMQ shows no message without delivering it: the oldest pending chunk's age
        age = found[("voicebatch_queue_oldest_message_age_seconds", (("queue", RENDER),))]
        assert 1.2 <= age < 120
        exporter.poll()  # reading did not take them
        assert samples(exporter)[("voicebatch_queue_depth", (("queue", RENDER),))] == 2
    finally:
        for command in cleanup:
            subprocess.run(command, capture_output=True, timeout=60)


def test_an_exporter_pointed_at_a_broker_that_does_not_answer_says_so_in_one_line(
    redis_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env |= {
        "VOICEBATCH_DATABASE_URL": redis_settings.resolved_database_url,
        "VOICEBATCH_BROKER_URL": f"redis://:secret@127.0.0.1:{free_port()}/0",
        "VOICEBATCH_STORAGE_URL": redis_settings.resolved_storage_url,
        "VOICEBATCH_S3_ENDPOINT_URL": redis_settings.s3_endpoint_url or "",
        "VOICEBATCH_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [VOICEBATCH, "exporter", "--port", str(port)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert "broker unreachable at redis://***@127.0.0.1:" in lines[0]
    assert "secret" not in done.stderr


def test_a_price_that_is_not_a_number_stops_a_worker_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env |= {"VOICEBATCH_WORKER_HOURLY_PRICE": "1,20 EUR", "VOICEBATCH_DATA_DIR": str(tmp_path)}
    for argv in (["worker", "--queues", "assemble"], ["exporter"]):
        done = subprocess.run(
            [VOICEBATCH, *argv], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "VOICEBATCH_WORKER_HOURLY_PRICE" in line and "number" in line, line


def test_a_round_reads_a_bounded_number_of_finished_rows_and_the_next_goes_on(
    redis_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.exporter

    app = create_celery(redis_settings)
    exporter = Exporter(redis_settings, lag_seconds=0)
    job = new_job(app)
    db = app.context.resources.factory
    for chunk in lease(db, job, "w1", limit=3):
        assert complete(db, chunk, "w1")
        time.sleep(0.01)  # distinct rendered_at
    monkeypatch.setattr(workers.exporter, "ROWS_PER_ROUND", 2)
    counts = []
    for _ in range(3):
        exporter.poll()
        counts.append(samples(exporter)[("voicebatch_chunk_latency_seconds_count", ())])
    assert counts == [2, 3, 3]  # each chunk once, none lost to the bound


def test_the_webhook_backlog_comes_from_the_outbox(redis_settings: Settings) -> None:
    """Undelivered deliveries, those due, and the oldest one's age: what the webhook
    alerts read, whether or not any sender runs."""
    from dataclasses import replace
    from datetime import timedelta

    from sqlalchemy import update

    from pipeline.state import store
    from pipeline.state.models import WebhookDelivery, utcnow
    from tests.support.state import make_spec

    exporter = Exporter(redis_settings, lag_seconds=0)
    db = exporter.resources.factory
    exporter.poll()
    found = samples(exporter)
    assert found[("voicebatch_webhook_deliveries_pending", ())] == 0
    assert found[("voicebatch_webhook_oldest_undelivered_age_seconds", ())] == 0
    spec = replace(
        make_spec(fingerprint=uuid.uuid4().hex * 2), callback_url="https://hooks.example.com/a"
    )
    with transaction(db) as session:
        job = store.create_job(session, spec=spec)
        assert store.start_job(session, job_id=job)
        assert store.cancel_job(session, job_id=job)
    with transaction(db) as session:  # its event written two hours ago
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.job_id == job)
            .values(created_at=utcnow() - timedelta(hours=2))
        )
    exporter.poll()
    found = samples(exporter)
    assert found[("voicebatch_webhook_deliveries_pending", ())] == 1
    assert found[("voicebatch_webhook_deliveries_due", ())] == 1
    assert 7200 <= found[("voicebatch_webhook_oldest_undelivered_age_seconds", ())] < 7300
    assert 0 <= found[("voicebatch_webhook_oldest_due_seconds", ())] < 100  # due since written
