"""Scenarios 3 and 4: a render worker told to stop, by SIGTERM or by a spot notice from a
fake metadata server (AWS IMDSv2, GCP). It takes no new work, finishes what fits in its
grace period or hands it back, exits before the deadline, and another worker finishes."""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import text

from pipeline.state.db import transaction
from tests.chaos.harness import Cluster, MakeCluster
from tests.support.spot_server import FakeMetadata

pytestmark = pytest.mark.e2e
GRACE = 4


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
    extra = {"VOICEBATCH_TEST_ENGINE_DELAY_MS": "1500"}  # 4 chunks a message: 6 s > 4 s grace
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
        # out before the grace period ran out (plus the notice's poll and shutdown),
        # holding nothing: no chunk waits for its lease to expire
        assert took < GRACE + 6, (took, cluster.log("stopping")[-3000:])
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
        assert helper_starts - stopped < GRACE + 6
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
