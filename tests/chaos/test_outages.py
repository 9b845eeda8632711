"""Scenario 13: S3, and separately PostgreSQL, down for 60 s in the middle of the jobs.
Passing trouble is tried again in place with backoff for VOICEBATCH_TASK_RETRY_SECONDS
(20 s here, shorter than the outage on purpose), then the chunks are handed back with
their attempt given back and the message tried again later: no chunk fails, and every
job finishes done once the service is back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.chaos.harness import MAX_LEASE_OVERDUE_SECONDS, Cluster, MakeCluster
from tests.chaos.services import PrivatePostgres, S3FaultProxy

pytestmark = pytest.mark.e2e
OUTAGE_SECONDS = 60.0  # issue 16: "a 60-second outage of S3, and a separate one of PostgreSQL"


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.close()


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[S3FaultProxy]:
    proxy = S3FaultProxy(s3_endpoint, share=0.0, delay=0.0)
    yield proxy
    proxy.close()


def _start(cluster: Cluster) -> None:
    """Two jobs, caught while a worker holds leases (mid-batch)."""
    cluster.assemble_worker()
    cluster.reconciler()
    cluster.render_worker("render", VOICEBATCH_TEST_ENGINE_DELAY_MS="250")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=4))
    cluster.wait_until_leased("render")


def test_a_60_second_s3_outage_fails_no_chunk(
    make_cluster: MakeCluster, s3_proxy: S3FaultProxy
) -> None:
    cluster = make_cluster(
        "13. S3 down for 60 s mid-job", s3_url=s3_proxy.url, s3_timeout_seconds="2"
    )
    _start(cluster)
    cluster.fault()
    s3_proxy.down = True
    time.sleep(OUTAGE_SECONDS)
    s3_proxy.down = False
    cluster.last_fault = time.monotonic()  # time to recover: from the end of the outage
    recovered = cluster.wait_final(180)
    cluster.verify(recover_seconds=recovered)
    assert s3_proxy.refused > 10, s3_proxy.refused  # the outage was met, and ridden out
    assert "trying again in" in cluster.log("render")


def test_a_60_second_database_outage_fails_no_chunk(
    private_pg: PrivatePostgres, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(
        "13. PostgreSQL down for 60 s mid-job", database_url=private_pg.create_database("chaos")
    )
    # the leases run out while the database that holds them is down; the reconciler hands
    # them on within a round of its return
    cluster.max_lease_overdue = MAX_LEASE_OVERDUE_SECONDS + OUTAGE_SECONDS
    _start(cluster)
    cluster.fault()
    private_pg.stop("immediate")
    time.sleep(OUTAGE_SECONDS)
    private_pg.start()
    cluster.last_fault = time.monotonic()
    recovered = cluster.wait_final(180)
    cluster.verify(recover_seconds=recovered)
    assert "trying again in" in cluster.log("render")
