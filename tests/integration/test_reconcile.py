"""The reconciler finds what the broker lost, against real PostgreSQL and a Redis broker."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, ItemStatus, JobStatus
from pipeline.state.reconcile import ReconcilerLock
from tests.support.services import private_redis_url
from tests.support.workers import new_job
from workers.app import VoicebatchCelery, create_celery
from workers.reconciler import queue_depth, reconcile_once

NOW = timedelta(0)


@pytest.fixture
def app(s3_settings: Settings, pg_migrated_url: str) -> Iterator[VoicebatchCelery]:
    import redis

    redis.Redis.from_url(private_redis_url()).flushdb()
    settings = s3_settings.model_copy(
        update={
            "database_url": pg_migrated_url,
            "broker_url": private_redis_url(),
            "task_chunks": 2,
        }
    )
    yield create_celery(settings)
    redis.Redis.from_url(private_redis_url()).flushdb()


def messages(queue: str) -> list[list[Any]]:
    import redis

    raw = redis.Redis.from_url(private_redis_url()).lrange(queue, 0, -1)
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0] for m in raw]


def test_lost_render_messages_are_published_again_only_when_the_queue_is_idle(
    app: VoicebatchCelery,
) -> None:
    job_id = new_job(app)
    due = reconcile_once(app, grace=NOW)
    sent = messages("render.test-tone")
    with transaction(app.context.resources.factory) as session:
        chunk_ids = {
            str(c.id)
            for i in store.job_items(session, job_id=job_id)
            for c in store.item_chunks(session, item_id=i.id)
        }
    assert due.chunks == len(chunk_ids) and queue_depth(app, "render.test-tone") == len(sent)
    assert {c for args in sent for c in args[1]} == chunk_ids and {a[0] for a in sent} == {
        str(job_id)
    }
    # the queue holds them now: a second round adds nothing (a backlog is not a loss)
    assert reconcile_once(app, grace=NOW).chunks == 0
    assert len(messages("render.test-tone")) == len(sent)


def test_expired_leases_are_republished_and_exhausted_chunks_fail(app: VoicebatchCelery) -> None:
    job_id = new_job(app)
    factory = app.context.resources.factory
    with transaction(factory) as session:  # a renderer took two chunks, then died
        dead = store.lease_chunks(
            session,
            job_id=job_id,
            owner="gone:1:x",
            limit=2,
            ttl=timedelta(seconds=-1),
            max_attempts=3,
        )
    due = reconcile_once(app, grace=timedelta(hours=1))  # idle pending chunks are not due yet
    published = [c for args in messages("render.test-tone") for c in args[1]]
    assert published == [str(c.chunk_id) for c in dead]
    assert due.failed_chunks == 0
    with transaction(factory) as session:  # the same two die twice more: 3 attempts
        for _ in range(2):
            again = store.lease_chunks(
                session,
                job_id=job_id,
                owner="gone:2:y",
                limit=2,
                ttl=timedelta(seconds=-1),
                max_attempts=99,
                chunk_ids=[c.chunk_id for c in dead],
            )
    assert len(again) == 2
    assert reconcile_once(app, grace=timedelta(hours=1)).failed_chunks == 2
    with transaction(factory) as session:
        failed = store.failed_chunks(session, job_id=job_id)
        assert len(failed) == 2 and "gave up after 3 attempts" in (failed[0].error or "")


def test_items_and_jobs_left_unclaimed_or_unassembled_are_driven_on(app: VoicebatchCelery) -> None:
    import redis

    job_id = new_job(app)
    factory = app.context.resources.factory
    with transaction(factory) as session:  # every chunk done, and then the renderer died
        for chunk in store.lease_chunks(
            session, job_id=job_id, owner="w", limit=100, ttl=timedelta(minutes=5), max_attempts=3
        ):
            store.complete_chunk(
                session,
                chunk_id=chunk.chunk_id,
                owner="w",
                object_key="k",
                duration=1.0,
                sample_rate=22050,
            )
    due = reconcile_once(app, grace=timedelta(hours=1))
    with transaction(factory) as session:
        items = store.job_items(session, job_id=job_id)
        assert {i.status for i in items} == {ItemStatus.ASSEMBLING}
    assert sorted(due.assemble) == sorted((job_id, i.id) for i in items)
    assert sorted(a[1] for a in messages("assemble")) == sorted(str(i.id) for i in items)
    # claimed a moment ago: not republished until they have waited for `grace`
    assert reconcile_once(app, grace=timedelta(hours=1)).assemble == []
    # nor while their messages wait in the assemble queue (a backlog, not a loss)
    assert reconcile_once(app, grace=NOW).assemble == []
    redis.Redis.from_url(private_redis_url()).delete("assemble")  # the broker lost them
    assert len(reconcile_once(app, grace=NOW).assemble) == 2
    with transaction(factory) as session:
        for item in items:
            store.complete_item(session, item_id=item.id, object_key="f", duration=1.0)
    due = reconcile_once(app, grace=timedelta(hours=1))
    assert due.finalize == [job_id]
    with transaction(factory) as session:
        assert store.get_job(session, job_id).status == JobStatus.ASSEMBLING
        assert store.job_progress(session, job_id=job_id).chunks_done == 4
        assert all(
            c.status == ChunkStatus.DONE for c in store.item_chunks(session, item_id=items[0].id)
        )


def test_only_the_reconciler_holding_the_lock_acts(app: VoicebatchCelery) -> None:
    """Issue 16.11: two reconcilers would publish every lost message twice. The second
    one skips its rounds while the first holds the advisory lock, and takes over when
    the first stops."""
    job_id = new_job(app)
    bind = app.context.resources.factory.kw["bind"]
    first, second = ReconcilerLock(bind), ReconcilerLock(bind)
    try:
        assert first.held()
        assert reconcile_once(app, grace=NOW, lock=second) is None
        assert messages("render.test-tone") == []  # the waiting one published nothing
        due = reconcile_once(app, grace=NOW, lock=first)
        assert due is not None and due.chunks > 0
        assert {args[0] for args in messages("render.test-tone")} == {str(job_id)}
        first.release()  # the acting reconciler stops: the other takes over
        assert second.held()
        assert reconcile_once(app, grace=NOW, lock=second) is not None
    finally:
        first.release()
        second.release()


def test_a_round_visits_jobs_oldest_first(app: VoicebatchCelery) -> None:
    jobs = [new_job(app) for _ in range(8)]
    factory = app.context.resources.factory
    with transaction(factory) as session:
        for job_id in jobs:
            for item in store.job_items(session, job_id=job_id):
                for chunk in store.item_chunks(session, item_id=item.id):
                    chunk.status = ChunkStatus.DONE
                    chunk.object_key = "chunks/x.wav"
                    chunk.duration_seconds = 1.0
                    chunk.sample_rate = 22050
    due = reconcile_once(app, grace=NOW)
    assert due is not None
    seen = list(dict.fromkeys(job_id for job_id, _ in due.assemble))
    assert seen == jobs
