"""A rendered chunk whose object vanished is rendered again, not taken for a job that is
gone (issue 16, defect 2): on PostgreSQL with the worker's real message drivers, a missing
object before assembly and before finalization sends the chunk back to pending, and the
job still finishes done; the retry policy drops a message only for a missing job."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Reject

from pipeline.assemble.leases import AssemblyLease
from pipeline.assemble.messages import assemble_item_message, finalize_job_message
from pipeline.config import Settings
from pipeline.errors import ChunkObjectsMissing, NotFoundError, RecordGone
from pipeline.plan.documents import document_from_chapters
from pipeline.plan.submit import SubmittedJob
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, ItemStatus, JobStatus
from pipeline.storage.local import LocalObjectStore
from tests.support.services import private_redis_url
from tests.support.workers import render_ids, submit, tone_settings
from workers.context import WorkerResources

pytestmark = pytest.mark.integration


def _settings(root: Path, **overrides: Any) -> Settings:
    return tone_settings(root, chunk_max_chars=40, normalize_text=False, **overrides)


def _submit(resources: WorkerResources, settings: Settings) -> SubmittedJob:
    parsed = document_from_chapters(
        "Book", [("One", "First line here. Second line here."), ("Two", "Third line here.")]
    )
    return submit(resources.factory, settings, parsed)


def _lease() -> AssemblyLease:
    return AssemblyLease(owner=f"test-{uuid.uuid4().hex[:8]}", seconds=30)


def test_a_chunk_object_gone_before_assembly_and_before_finalize_is_rendered_again(
    pg_migrated_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url=pg_migrated_url)
    resources = WorkerResources.open(settings)
    submitted = _submit(resources, settings)
    job = submitted.job_id
    ids = [c for group in submitted.chunk_groups for c in group]
    ready = render_ids(resources, settings, job, ids).ready_items
    assert len(ready) == 2
    with transaction(resources.factory) as session:
        first, second = store.job_items(session, job_id=job)
        victim = store.item_chunks(session, item_id=first.id)[1]
    assert victim.object_key is not None
    resources.chunk_store.delete(victim.object_key)  # lifecycle expiry, a cleanup

    def assemble(item: uuid.UUID) -> Any:
        return assemble_item_message(
            resources.factory,
            job_id=job,
            item_id=item,
            chunk_store=resources.chunk_store,
            output_store_for=resources.output_store,
            lease=_lease(),
        )

    outcome = assemble(first.id)  # before: NotFoundError, and the message dropped
    assert outcome is not None and outcome.reopened.chunk_ids == [victim.id]
    assert outcome.reopened.engine == "test-tone"  # published to that engine's queue
    assert outcome.status == ItemStatus.PENDING and not outcome.finalize
    with transaction(resources.factory) as session:
        assert store.get_job(session, job).status == JobStatus.RENDERING
        assert store.get_item(session, item_id=first.id).status == ItemStatus.PENDING
        chunk = store.item_chunks(session, item_id=first.id)[1]
        assert chunk.status == ChunkStatus.PENDING and chunk.object_key is None
    again = render_ids(resources, settings, job, outcome.reopened.chunk_ids)
    assert again.ready_items == [first.id]
    assert resources.chunk_store.exists(victim.object_key)  # rendered again
    assert assemble(first.id).status == ItemStatus.DONE
    assert assemble(second.id).finalize

    # Gone again, this time before the book is written: the finalizer sends it back too.
    resources.chunk_store.delete(victim.object_key)
    final = finalize_job_message(
        resources.factory,
        job_id=job,
        chunk_store=resources.chunk_store,
        output_store_for=resources.output_store,
        lease=_lease(),
    )
    assert final.status is None and final.reopened.chunk_ids == [victim.id]
    assert render_ids(resources, settings, job, [victim.id]).ready_items == [first.id]
    assert assemble(first.id).finalize
    final = finalize_job_message(
        resources.factory,
        job_id=job,
        chunk_store=resources.chunk_store,
        output_store_for=resources.output_store,
        lease=_lease(),
    )
    assert final.status == JobStatus.DONE
    with transaction(resources.factory) as session:
        assert store.job_progress(session, job_id=job).chunks_done == len(ids)


def test_only_a_missing_job_drops_a_message_not_a_missing_chunk_object(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.retry_policy as retry_policy
    from workers.app import create_celery

    monkeypatch.setattr(retry_policy.time, "sleep", lambda _: None)
    app = create_celery(_settings(tmp_path, broker_url=private_redis_url(5), task_retry_seconds=1))
    with pytest.raises(NotFoundError) as read:  # what the chunk store says of a lost object
        LocalObjectStore(tmp_path / "objects").get("chunks/ab/gone.wav")
    tries: list[str] = []

    def object_gone(_: object, job_id: str) -> None:
        tries.append(job_id)
        # what assembly makes of it (pipeline.assemble.chunk_audio), should it escape
        raise ChunkObjectsMissing("chunk 3's audio chunks/ab/gone.wav is gone") from read.value

    def job_gone(_: object, job_id: str) -> None:
        raise RecordGone(f"no job {job_id}")

    app.retry_policy.wrap("voicebatch.test_gone", job_gone, lambda: object())("job-1")
    assert "no job job-1; message dropped" in caplog.text  # the database has no such job
    caplog.clear()
    with pytest.raises(Reject):  # tried again, then handed back: never dropped
        app.retry_policy.wrap("voicebatch.test_gone", object_gone, lambda: object())("job-2")
    assert len(tries) > 1 and "dropped" not in caplog.text


def test_index_entries_live_no_longer_than_their_objects_and_are_forgotten(
    tmp_path: Path,
) -> None:
    import redis

    from pipeline.render.chunk_index import RedisChunkIndex, index_ttl_seconds
    from pipeline.state.store import RenderedAudio

    # a lifecycle rule that keeps chunk audio 8 days: entries live a week at most, and
    # never past the rule however it is set
    for days in (8, 30):
        ttl = index_ttl_seconds(_settings(tmp_path, chunk_expire_days=days))
        assert ttl <= days * 24 * 3600 and ttl <= 7 * 24 * 3600
    client = redis.Redis.from_url(private_redis_url(6))
    client.flushdb()
    index = RedisChunkIndex(client, ttl_seconds=ttl)
    index.remember({"ab" * 32: RenderedAudio("chunks/ab/x.wav", 1.0, 22050)})
    assert 0 < client.ttl(f"vb:chunk:{'ab' * 32}") <= ttl
    assert index.lookup(["ab" * 32])
    index.forget(["ab" * 32])  # its object turned out to be gone (an assembler found it)
    assert index.lookup(["ab" * 32]) == {}
