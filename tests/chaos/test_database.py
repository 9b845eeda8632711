"""Scenario 6: PostgreSQL restarted mid-job (every connection cut, the server down for a
few seconds), and the workers' database connections killed under them. Tasks retry in
place with backoff, leases outlive the outage, and every job finishes exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.chaos.harness import Cluster, MakeCluster
from tests.chaos.services import PrivatePostgres

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.close()


def _running(server: PrivatePostgres, make_cluster: MakeCluster, scenario: str) -> Cluster:
    """Two jobs on the private server's database, caught while a worker holds leases."""
    cluster = make_cluster(scenario, database_url=server.create_database("chaos"))
    cluster.assemble_worker()
    cluster.reconciler()
    cluster.render_worker("render", VOICEBATCH_TEST_ENGINE_DELAY_MS="250")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=4))
    cluster.wait_until_leased("render")
    return cluster


def test_a_database_restart_mid_job_only_delays_it(
    private_pg: PrivatePostgres, make_cluster: MakeCluster
) -> None:
    cluster = _running(private_pg, make_cluster, "6. PostgreSQL restarted mid-job (down 3 s)")
    cluster.fault()
    private_pg.restart(down_seconds=3)
    recovered = cluster.wait_final(150)
    cluster.verify(recover_seconds=recovered)
    workers = cluster.log("render") + cluster.log("assemble")
    assert "trying again in" in workers  # the outage was seen, and ridden out in place


def test_killed_database_connections_only_delay_the_job(
    private_pg: PrivatePostgres, make_cluster: MakeCluster
) -> None:
    cluster = _running(
        private_pg, make_cluster, "6. the workers' database connections killed, 3 times"
    )
    for _ in range(3):
        cluster.fault(private_pg.kill_connections("chaos"))
        time.sleep(1.5)
    recovered = cluster.wait_final(150)
    result = cluster.verify(recover_seconds=recovered)
    assert result.faults >= 3
