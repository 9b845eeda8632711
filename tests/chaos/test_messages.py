"""Scenarios 5 and 8: the broker restarted with every queued message lost, and the same
messages delivered twice at once and replayed after the job ended. The database decides:
losses only delay, duplicates change nothing."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from pipeline.state import store
from pipeline.state.db import transaction
from tests.chaos.harness import Cluster, MakeCluster
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.e2e


def _publish_again(cluster: Cluster) -> int:
    """Every chunk of every job published once more, as the submit did."""
    settings = cluster.settings
    dispatcher = CeleryDispatcher(create_celery(settings))
    published = 0
    for job_id in cluster.jobs:
        with transaction(cluster.factory) as session:
            ids = [
                c.id
                for item in store.job_items(session, job_id=job_id)
                for c in store.item_chunks(session, item_id=item.id)
            ]
        size = settings.task_chunks
        groups = [ids[i : i + size] for i in range(0, len(ids), size)]
        dispatcher.render(job_id, groups)
        published += len(groups)
    return published


def _chunk_rows(cluster: Cluster) -> dict[uuid.UUID, tuple[Any, ...]]:
    """Every chunk's attempts, last change and object: what a duplicate must not touch."""
    with transaction(cluster.factory) as session:
        return {
            c.id: (c.attempts, c.updated_at, c.object_key)
            for job in cluster.jobs
            for item in store.job_items(session, job_id=job)
            for c in store.item_chunks(session, item_id=item.id)
        }


def test_the_same_messages_twice_at_once_and_replayed_later_change_nothing(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster("8. every message delivered twice at once, and replayed later")
    cluster.assemble_worker()
    cluster.render_worker("render", VOICEBATCH_TEST_ENGINE_DELAY_MS="200")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=3))
    cluster.fault(_publish_again(cluster))  # every message now twice in the queue
    recovered = cluster.wait_final(90)
    first = _chunk_rows(cluster)
    # each chunk was leased (and rendered) by exactly one copy of its message
    assert {attempts for attempts, _, _ in first.values()} == {1}
    cluster.fault(_publish_again(cluster))  # a replay, after the jobs ended
    time.sleep(3)
    assert _chunk_rows(cluster) == first
    result = cluster.verify(recover_seconds=recovered)
    assert result.wasted == 0


def test_a_broker_restart_that_loses_every_queued_message_only_delays_the_jobs(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster("5. broker restarted mid-job, its queued messages lost")
    assert cluster.redis is not None
    cluster.assemble_worker()
    cluster.render_worker("render", VOICEBATCH_TEST_ENGINE_DELAY_MS="300")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=4))
    cluster.wait_until_leased("render")
    cluster.redis.kill()  # no persistence: the queued messages are gone
    cluster.fault()
    cluster.redis.start()
    cluster.reconciler(grace=3)
    recovered = cluster.wait_final(150)
    cluster.verify(recover_seconds=recovered)
    assert "chunks republished" in cluster.log("reconcile")
