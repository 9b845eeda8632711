"""Scenarios 11, 14 and 15 (issue 16): a chunk object deleted before its item assembles;
a long assembly while the reconciler runs every second; two reconcilers at once.
Each assembly runs once (the assemblers' journal); the vanished chunk is rendered again
and its job still finishes done."""

from __future__ import annotations

import time
import uuid

import pytest

from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus
from tests.chaos.harness import PREFIX, Cluster, MakeCluster

pytestmark = pytest.mark.e2e


def _wait_assembling(cluster: Cluster, job: uuid.UUID, seconds: float = 90) -> None:
    """Until every item of the job is rendered and claimed for assembly."""
    deadline = time.monotonic() + seconds
    while True:
        with transaction(cluster.factory) as session:
            statuses = {i.status for i in store.job_items(session, job_id=job)}
        if statuses == {ItemStatus.ASSEMBLING}:
            return
        assert time.monotonic() < deadline, f"{statuses}\n{cluster.tails()}"
        time.sleep(0.2)


def test_a_chunk_object_deleted_before_assembly_is_rendered_again(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster("11. a chunk object deleted before its item assembles")
    cluster.reconciler()
    cluster.render_worker("render")
    job = cluster.submit(cluster.book(0, chapters=2, sentences=4))
    _wait_assembling(cluster, job)  # no assembler yet: the items wait, claimed
    with transaction(cluster.factory) as session:
        (first, *_) = store.job_items(session, job_id=job)
        victim = store.item_chunks(session, item_id=first.id)[2]
    key = f"{PREFIX}/{victim.object_key}"
    versions = cluster.s3.list_object_versions(Bucket=cluster.bucket, Prefix=key)["Versions"]
    for version in versions:  # gone for good, as a lifecycle expiry leaves it
        cluster.s3.delete_object(Bucket=cluster.bucket, Key=key, VersionId=version["VersionId"])
    cluster.fault()
    cluster.assemble_worker()
    recovered = cluster.wait_final(120)
    result = cluster.verify(
        recover_seconds=recovered, vanished=frozenset({victim.id}), assembly_faulted=True
    )
    assert result.wasted == 1  # that one chunk, rendered again; nothing else
    # its item's first assembly stopped at the missing audio and ran again once rendered
    assert result.duplicate_assemblies == 1
    assert "chunk objects gone" in cluster.log("assemble")


def test_a_long_assembly_runs_once_while_the_reconciler_runs(make_cluster: MakeCluster) -> None:
    """Each assembly takes longer than a lease (5 s) and than the reconciler's grace: the
    heartbeat keeps its lease, so nothing publishes it again, and no duplicate message
    (two assemble workers take them) assembles anything twice."""
    cluster = make_cluster(
        "14. a long assembly (6 s a run) with the reconciler every 1 s",
        assembly_delay_ms="6000",
    )
    reconciler = cluster.reconciler(interval=1.0, grace=1.0)
    cluster.assemble_worker("assemble")
    cluster.assemble_worker("assemble2")
    cluster.render_worker("render")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=3))
    cluster.wait_final(180)
    assert reconciler.poll() is None, cluster.log("reconcile")  # it ran all along
    result = cluster.verify(recover_seconds=None)
    assert result.duplicate_assemblies == 0
    runs = cluster._assembly_journal()
    assert len(runs) == 2 * (2 + 1)  # every item and every job assembled exactly once


def test_two_reconcilers_publish_each_lost_message_once(make_cluster: MakeCluster) -> None:
    """Every message is lost (nothing published at submit): only the reconciler holding
    the advisory lock publishes, so each chunk is rendered once and each item and job is
    assembled once."""
    cluster = make_cluster("15. two reconcilers, every message lost", assembly_delay_ms="2000")
    first = cluster.reconciler("reconcile", interval=1.0, grace=1.0)
    second = cluster.reconciler("reconcile2", interval=1.0, grace=1.0)
    cluster.assemble_worker()
    cluster.render_worker("render")
    for job in range(2):
        cluster.submit(cluster.book(job, chapters=2, sentences=4), publish=False)
    cluster.fault(2)  # the lost publishes
    recovered = cluster.wait_final(180)
    result = cluster.verify(recover_seconds=recovered)
    assert result.wasted == 0 and result.duplicate_assemblies == 0
    assert first.poll() is None and second.poll() is None, cluster.tails()
    acted = [name for name in ("reconcile", "reconcile2") if "reconciled:" in cluster.log(name)]
    assert acted, cluster.tails()
