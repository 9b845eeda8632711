"""Scenarios 3 and 4: a render worker told to stop, by SIGTERM or by a spot notice from a
fake metadata server (AWS IMDSv2, GCP), with the threads pool and with prefork. It takes
no new work, finishes what fits in its grace period; a batch that does not fit is cut off
by the deadline: its leases released, its message handed back to the queue, the worker
gone before the grace ends; another worker finishes. An AWS rebalance recommendation
stops nothing."""

from __future__ import annotations

import signal
import time

import pytest
import redis
from sqlalchemy import text

from pipeline.state.db import transaction
from tests.chaos.harness import Cluster, MakeCluster
from tests.support.spot_server import FakeMetadata

pytestmark = pytest.mark.e2e
GRACE = 4
# The worker is gone by the grace's end; this much more is the test's slack on a busy
# machine (the signal reaching Celery's handler, the notice's poll, process teardown).
# A batch is far longer than both: a worker that waited for it could not pass.
SLACK = 1.5
LONG_BATCH_MS = "2500"  # per chunk: a message of 4 takes 10 s


def _queued(cluster: Cluster) -> tuple[int, int]:
    """Messages waiting in the broker's lists, and messages delivered but unacknowledged."""
    assert cluster.redis is not None
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        waiting = sum(
            int(client.llen(key)) for key in client.scan_iter() if client.type(key) == b"list"
        )
        return waiting, int(client.hlen("unacked"))
    finally:
        client.close()


def _leases_taken_after(cluster: Cluster, moment: float) -> list[float]:
    """Seconds after `moment` (a time.monotonic() reading) of each lease taken since."""
    with transaction(cluster.factory) as session:
        taken = session.scalars(
            text(
                "SELECT extract(epoch FROM at) FROM chaos_transitions "
                "WHERE tbl = 'chunks' AND new = 'leased'"
            )
        ).all()
    wall = time.time() - (time.monotonic() - moment)  # `moment` on the database's clock
    return sorted(float(at) - wall for at in taken if float(at) > wall)


@pytest.mark.parametrize("how", ["sigterm", "aws-notice", "gcp-notice"])
def test_a_stopped_worker_hands_back_what_does_not_fit_before_its_grace_ends(
    make_cluster: MakeCluster, how: str
) -> None:
    name = {"sigterm": "3. SIGTERM, grace shorter than the batch"}.get(
        how, f"4. spot notice ({how.split('-')[0].upper()}), grace shorter than the batch"
    )
    cluster = make_cluster(name, worker_grace_seconds=str(GRACE))
    metadata = FakeMetadata()
    extra = {"VOICEBATCH_TEST_ENGINE_DELAY_MS": LONG_BATCH_MS}
    if how != "sigterm":
        extra |= {
            "VOICEBATCH_SPOT_PROVIDER": how.split("-")[0],
            "VOICEBATCH_SPOT_METADATA_URL": metadata.url,
            "VOICEBATCH_SPOT_POLL_SECONDS": "0.2",
        }
    try:
        cluster.assemble_worker()
        cluster.reconciler()
        worker = cluster.render_worker("stopping", env=extra)
        cluster.submit(cluster.book(0, chapters=1, sentences=8))
        cluster.wait_until_leased("stopping")
        stopped = time.monotonic()
        if how == "sigterm":
            worker.send_signal(signal.SIGTERM)
        elif how == "aws-notice":
            metadata.aws_action = '{"action": "terminate", "time": "2026-11-25T07:00:00Z"}'
        else:
            metadata.gcp_preempted = True
        cluster.fault()
        worker.wait(30)
        took = time.monotonic() - stopped
        # out before the grace period ran out, holding nothing: no chunk waits for its
        # lease to expire
        assert took < GRACE + SLACK, (took, cluster.log("stopping")[-3000:])
        counts = cluster.counts()
        assert counts.get("leased", 0) == 0 and counts.get("done", 0) < 9, counts
        if how != "sigterm":
            assert "spot" in cluster.log("stopping") and "notice" in cluster.log("stopping")
        # no new work was taken after the notice: no lease by anyone until the helper runs
        helper_starts = time.monotonic()
        assert not [t for t in _leases_taken_after(cluster, stopped) if t > 1.0]
        cluster.render_worker("helper")
        recovered = cluster.wait_final(90)
        cluster.verify(recover_seconds=recovered)
        assert helper_starts - stopped < GRACE + SLACK + 1
    finally:
        metadata.close()


def test_sigterm_under_prefork_cuts_a_long_batch_off_by_the_deadline(
    make_cluster: MakeCluster,
) -> None:
    """Only the main process hears SIGTERM; the pool's children render on. They are cut
    off before the grace ends: leases released, messages back in the queue (no
    reconciler runs here to re-publish them), and a helper finishes the job."""
    cluster = make_cluster(
        "3. SIGTERM under the prefork pool, batch longer than the grace",
        worker_grace_seconds=str(GRACE),
    )
    cluster.assemble_worker()
    worker = cluster.render_worker(
        "stopping", pool="prefork", concurrency=2, VOICEBATCH_TEST_ENGINE_DELAY_MS=LONG_BATCH_MS
    )
    cluster.submit(cluster.book(0, chapters=1, sentences=8))  # 9 chunks: 3 messages
    cluster.wait_until_leased("stopping", at_least=8)  # both children mid-batch
    stopped = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    cluster.fault()
    worker.wait(30)
    took = time.monotonic() - stopped
    assert took < GRACE + SLACK, (took, cluster.log("stopping")[-3000:])
    counts = cluster.counts()
    assert counts.get("leased", 0) == 0 and counts.get("done", 0) == 0, counts
    waiting, unacked = _queued(cluster)
    assert (waiting, unacked) == (3, 0), cluster.log("stopping")[-3000:]  # all handed back
    assert "grace is up" in cluster.log("stopping")
    cluster.render_worker("helper", pool="prefork", concurrency=2)
    recovered = cluster.wait_final(90)
    cluster.verify(recover_seconds=recovered)


def test_an_aws_rebalance_recommendation_stops_nothing(make_cluster: MakeCluster) -> None:
    """The recommendation stays posted: draining on it would restart the worker into it
    for ever. It is logged once and the worker goes on; the interruption notice that
    may follow still drains it."""
    cluster = make_cluster("4. AWS rebalance recommendation: work goes on")
    metadata = FakeMetadata()
    metadata.aws_rebalance = '{"noticeTime": "2026-11-25T06:20:00Z"}'
    try:
        cluster.assemble_worker()
        worker = cluster.render_worker(
            "render",
            VOICEBATCH_SPOT_PROVIDER="aws",
            VOICEBATCH_SPOT_METADATA_URL=metadata.url,
            VOICEBATCH_SPOT_POLL_SECONDS="0.2",
        )
        cluster.submit(cluster.book(0, chapters=1, sentences=8))
        cluster.wait_final(90)
        assert worker.poll() is None, cluster.log("render")[-3000:]
        log = cluster.log("render")
        assert log.count("rebalance recommendation") == 1 and "grace is up" not in log
        cluster.verify(recover_seconds=None)  # nothing to recover from
        metadata.aws_action = '{"action": "terminate", "time": "2026-11-25T07:00:00Z"}'
        worker.wait(GRACE + 10)  # the interruption notice does drain it
    finally:
        metadata.close()


def test_a_stopped_worker_finishes_a_batch_that_fits_in_its_grace_period(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster("3. SIGTERM, grace longer than the batch", worker_grace_seconds="20")
    cluster.assemble_worker()
    cluster.reconciler()
    worker = cluster.render_worker("stopping", VOICEBATCH_TEST_ENGINE_DELAY_MS="1000")
    cluster.submit(cluster.book(0, chapters=1, sentences=8))
    cluster.wait_until_leased("stopping")
    held = cluster.counts().get("leased", 0)
    stopped = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    cluster.fault()
    worker.wait(40)
    took = time.monotonic() - stopped
    counts = cluster.counts()
    # it finished what it held (well inside 20 s) rather than handing it back
    assert took < 20, cluster.log("stopping")[-3000:]
    assert counts.get("done", 0) >= held and counts.get("leased", 0) == 0
    assert "released" not in cluster.log("stopping")
    cluster.render_worker("helper")
    recovered = cluster.wait_final(90)
    result = cluster.verify(recover_seconds=recovered)
    assert result.wasted == 0  # nothing it held had to be rendered again
