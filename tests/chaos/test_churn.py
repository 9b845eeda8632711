"""Scenario 10: a churn soak. 500 chunks across 3 render workers while a random one is
killed with SIGKILL every few seconds and started again (as a supervisor would); the
wasted renders (chunks rendered more than once) are reported as a figure."""

from __future__ import annotations

import random
import time

import pytest

from tests.chaos.harness import MakeCluster

pytestmark = pytest.mark.e2e
WORKERS = ("render-a", "render-b", "render-c")


def test_500_chunks_across_3_workers_killed_at_random_finish_exactly_once(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster("10. churn: 500 chunks, 3 workers, one killed every 3 s")
    cluster.assemble_worker()
    cluster.reconciler()
    for name in WORKERS:
        cluster.render_worker(name, VOICEBATCH_TEST_ENGINE_DELAY_MS="40")
    for job in range(5):  # 5 jobs x 4 parts x (heading + 24 lines) = 500 chunks
        cluster.submit(cluster.book(job, chapters=4, sentences=24))
    chooser = random.Random(10)
    kills = 0
    deadline = time.monotonic() + 240
    while not all(status.final for status in cluster.statuses()):
        assert time.monotonic() < deadline, f"{cluster.counts()}\n{cluster.tails()}"
        if kills < 8 and cluster.counts().get("pending", 0) + cluster.counts().get("leased", 0):
            victim = chooser.choice(WORKERS)
            cluster.kill(victim)
            cluster.restart(victim)
            kills += 1
        time.sleep(3)
    recovered = time.monotonic() - (cluster.last_fault or time.monotonic())
    result = cluster.verify(recover_seconds=recovered)
    assert result.chunks == 500 and kills >= 3
    # each kill loses at most the batches the victim held: 2 threads x 4 chunks
    assert result.wasted <= kills * 8, result
