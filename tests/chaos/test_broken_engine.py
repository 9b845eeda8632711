"""Scenario 12: an engine that turns sticky-broken. After a few renders the test engine
fails every render with torch's "CUDA error: an illegal memory access was encountered",
as a GPU does once its context is corrupt. The worker hands back what it holds, stops
taking work and exits non-zero; a supervisor starts it again; no chunk is failed for it
and every job finishes done."""

from __future__ import annotations

import time

import pytest

from pipeline.errors import EngineBroken
from tests.chaos.harness import Cluster, MakeCluster

pytestmark = pytest.mark.e2e
BREAK_AFTER = 5  # renders each worker process gets through before its "GPU" breaks


def _supervise(cluster: Cluster, name: str, seconds: float) -> list[int]:
    """Until every job is final, start `name` again each time it exits, as systemd or
    Kubernetes would; returns the exit codes it died with."""
    exits: list[int] = []
    deadline = time.monotonic() + seconds
    while True:
        try:
            if all(status.final for status in cluster.statuses()):
                return exits
        except Exception:  # the database may be restarting: look again
            pass
        assert time.monotonic() < deadline, f"{exits}\n{cluster.counts()}\n{cluster.tails()}"
        code = cluster.processes[name].poll()
        if code is not None:
            exits.append(code)
            cluster.fault()
            cluster.restart(name)
        time.sleep(0.2)


def test_a_sticky_broken_engine_restarts_its_worker_and_fails_no_chunk(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(
        "12. an engine that turns sticky-broken (CUDA illegal memory access)",
        test_engine_break_after=str(BREAK_AFTER),
    )
    cluster.assemble_worker()
    cluster.reconciler()
    cluster.render_worker("render")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=4))
    exits = _supervise(cluster, "render", 240)
    recovered = time.monotonic() - (cluster.last_fault or time.monotonic())
    cluster.verify(recover_seconds=recovered)  # every chunk done: none failed for the engine
    # 20 chunks, 5 renders a process: it broke, and said so with its exit code, each time
    assert len(exits) >= 3 and set(exits) == {EngineBroken.exit_code}, exits
    log = cluster.log("render")
    assert "illegal memory access" in log and "exiting with 69" in log
