"""Scenario 9: a chunk whose rendering always kills its process. It is failed after
max_attempts with the reason, the rest of the job is done, the job ends partially_failed
with a report of exactly that text, and nothing loops."""

from __future__ import annotations

import json

import pytest

from pipeline.state.models import JobStatus
from tests.chaos.harness import PREFIX, MakeCluster

pytestmark = pytest.mark.e2e


def test_a_chunk_that_always_crashes_its_worker_fails_alone_and_nothing_loops(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(
        "9. a chunk that always crashes its process", test_engine_crash_on="POISON"
    )
    cluster.assemble_worker()
    cluster.reconciler()
    cluster.render_worker("render")
    book = cluster.book(0, chapters=2, sentences=4)
    book[1].insert(2, "This one is POISON to the engine.")
    job = cluster.submit(book)
    starts = len(list(cluster.logs.glob("render*.log")))
    recovered = cluster.wait_final(150, supervise=["render"])
    restarts = len(list(cluster.logs.glob("render*.log"))) - starts
    result = cluster.verify(
        recover_seconds=recovered, expect={job: JobStatus.PARTIALLY_FAILED}, failing="POISON"
    )
    # the crash took down each worker that leased it, and nothing more: 3 attempts
    assert restarts == 3 and result.wasted == 2
    manifest = json.loads(cluster._get(f"{PREFIX}/jobs/{job}/manifest.json"))
    (failed,) = manifest["failed_chunks"]
    assert failed["text"] == "This one is POISON to the engine."
    assert "gave up after 3 attempts" in failed["error"]
    assert [c["title"] for c in manifest["chapters"]] == ["Part 1"]  # the sound chapter
