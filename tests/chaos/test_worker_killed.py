"""Scenarios 1 and 2: a render worker killed with SIGKILL mid-batch (on Redis and on
RabbitMQ), and only the prefork pool child that runs the task killed."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from sqlalchemy import text

from pipeline.state.db import transaction
from tests.chaos.harness import MakeCluster

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_render_worker_killed_mid_batch_loses_nothing(
    make_cluster: MakeCluster, broker: str
) -> None:
    # Redis redelivers the victim's message only after its visibility timeout, so the
    # reconciler publishes the chunks again once their leases run out; RabbitMQ redelivers
    # at once, and the survivor waits for the victim's leases to run out.
    cluster = make_cluster(f"1. kill -9 a render worker mid-batch ({broker})", broker=broker)
    cluster.assemble_worker()
    cluster.reconciler()
    cluster.render_worker("victim", VOICEBATCH_TEST_ENGINE_DELAY_MS="400")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=4))
    cluster.wait_until_leased("victim", at_least=2)
    cluster.kill("victim")  # no goodbye: leases held and a message unacknowledged
    held = cluster.counts().get("leased", 0)
    assert held > 0
    cluster.render_worker("survivor")
    recovered = cluster.wait_final(120)
    result = cluster.verify(recover_seconds=recovered)
    assert result.chunks == 2 * 2 * 5  # 2 jobs x 2 parts x (heading + 4 lines)
    with transaction(cluster.factory) as session:
        attempts = session.scalars(text("SELECT attempts FROM chunks")).all()
    # the chunks the victim held were taken over: one attempt more, and no more than that
    assert attempts.count(2) >= held and max(attempts) == 2
    if broker == "redis":
        assert "chunks republished" in cluster.log("reconcile")


def test_killing_only_the_pool_child_loses_nothing(make_cluster: MakeCluster) -> None:
    """prefork: the task's child dies, the worker lives on and starts a new child; the
    message comes back (reject on worker lost) and the chunks once their lease runs out."""
    cluster = make_cluster("2. kill -9 only the pool child")
    cluster.assemble_worker()
    cluster.reconciler()
    worker = cluster.render_worker(
        "render", pool="prefork", concurrency=1, VOICEBATCH_TEST_ENGINE_DELAY_MS="300"
    )
    cluster.submit(cluster.book(0, chapters=2, sentences=4))
    cluster.wait_until_leased("render")
    children = subprocess.run(
        ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert children, "a prefork worker has a pool child"
    for child in children:
        os.kill(int(child), signal.SIGKILL)
    cluster.fault(len(children))
    recovered = cluster.wait_final(120)
    assert worker.poll() is None, "the worker itself survives its child"
    assert "SIGKILL" in cluster.log("render")  # Celery saw its child die of the signal
    cluster.verify(recover_seconds=recovered)
