"""Input errors met during work end the work they concern, recorded, and no message goes
round the queue for them (issue 16, defect 8): render messages go to their engine's own
queue, so no worker is handed a job of another engine; a model version no worker runs
fails the chunks with why; storage that refuses (a missing bucket) fails the item with
its message; and the retry policy acknowledges an input error instead of requeueing it.
"""

from __future__ import annotations

import inspect
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from pipeline.assemble.messages import assemble_item_message
from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.plan.documents import document_from_items
from pipeline.plan.submit import SubmittedJob
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, ItemStatus
from pipeline.storage.factory import open_store
from tests.support.services import private_redis_url
from tests.support.workers import render_ids, submit, tone_settings
from workers.context import WorkerResources

pytestmark = pytest.mark.integration


def _settings(root: Path, **overrides: Any) -> Settings:
    return tone_settings(root, read_titles=False, **overrides)


def _submit(resources: WorkerResources, settings: Settings, items: int = 2) -> SubmittedJob:
    parsed = document_from_items("Shop", [(f"sku{i}", f"Item number {i}.") for i in range(items)])
    return submit(resources.factory, settings, parsed, kind="catalogue")


def _assembly_lease() -> dict[str, object]:
    if "lease" not in inspect.signature(assemble_item_message).parameters:
        return {}  # the starting commit had no assembly leases (issue 16, defect 5)
    from pipeline.assemble.leases import AssemblyLease

    return {"lease": AssemblyLease(owner=f"test-{uuid.uuid4().hex[:8]}")}


def test_the_retry_policy_acknowledges_an_input_error_instead_of_requeueing_it(
    tmp_path: Path,
) -> None:
    from workers.app import create_celery

    app = create_celery(_settings(tmp_path, broker_url=private_redis_url(3)))
    calls = []

    def body(_: object, job_id: str) -> None:
        calls.append(job_id)
        raise InputError("S3 refused access to s3://shop (AccessDenied)")

    task = app.retry_policy.wrap("voicebatch.test_input", body, lambda: object())
    task("job-1")  # returns: acknowledged (before, Reject(requeue=True) for ever)
    assert calls == ["job-1"]


def test_render_messages_go_to_their_engines_queue_and_workers_take_only_their_own(
    tmp_path: Path,
) -> None:
    from workers.app import create_celery
    from workers.celery_config import worker_queues
    from workers.dispatch import CeleryDispatcher

    url = private_redis_url(4)
    broker = redis.Redis.from_url(url)
    broker.flushdb()
    dispatcher = CeleryDispatcher(create_celery(_settings(tmp_path, broker_url=url)))
    job, chunk = uuid.uuid4(), uuid.uuid4()
    dispatcher.render(job, [[chunk]], engine="piper")
    dispatcher.render(job, [[chunk], [chunk]])  # the API's own engine: test-tone
    assert broker.llen("render.piper") == 1
    assert broker.llen("render.test-tone") == 2
    assert broker.llen("render") == 0
    # `--queues render` is the worker's own engine's queue; another engine's is refused.
    assert worker_queues(["render", "assemble"], "piper") == ["render.piper", "assemble"]
    assert worker_queues(["render.maya1"], "maya1") == ["render.maya1"]
    with pytest.raises(InputError, match=r"runs engine piper.*not render\.maya1"):
        worker_queues(["render.maya1"], "piper")
    with pytest.raises(InputError, match="unknown queue gpu"):
        worker_queues(["gpu"], "piper")


def test_a_model_version_no_worker_runs_fails_the_chunks_with_why(
    pg_migrated_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url=pg_migrated_url)
    resources = WorkerResources.open(settings)
    submitted = _submit(resources, settings)
    with transaction(resources.factory) as session:
        # Planned by an API that loaded other weights than this deployment's workers.
        session.execute(
            text("UPDATE jobs SET model_version = 'test-tone 0' WHERE id = :id"),
            {"id": submitted.job_id},
        )
    ids = [c for group in submitted.chunk_groups for c in group]
    outcome = render_ids(resources, settings, submitted.job_id, ids)
    assert outcome.retry_in is None and len(outcome.ready_items) == 2
    with transaction(resources.factory) as session:
        failed = store.failed_chunks(session, job_id=submitted.job_id)
        assert [c.status for c in failed] == [ChunkStatus.FAILED] * len(ids)
        assert all("planned for engine test-tone (test-tone 0)" in (c.error or "") for c in failed)
        assert all("EngineMismatch" in (c.error or "") for c in failed)


def test_an_output_bucket_that_does_not_exist_fails_the_item_with_its_message(
    pg_migrated_url: str, tmp_path: Path, s3_settings: Settings
) -> None:
    settings = s3_settings.model_copy(update={"database_url": pg_migrated_url})
    resources = WorkerResources.open(settings)
    submitted = _submit(resources, settings, items=1)
    ids = [c for group in submitted.chunk_groups for c in group]
    outcome = render_ids(resources, settings, submitted.job_id, ids)
    (item,) = outcome.ready_items
    missing = f"s3://gone-{uuid.uuid4().hex[:12]}/out"
    done = assemble_item_message(
        resources.factory,
        job_id=submitted.job_id,
        item_id=item,
        chunk_store=resources.chunk_store,
        output_store_for=lambda _: open_store(missing, settings),
        **_assembly_lease(),  # type: ignore[arg-type]
    )
    assert done is not None and done.status == ItemStatus.FAILED
    with transaction(resources.factory) as session:
        recorded = store.get_item(session, item_id=item)
        assert recorded.status == ItemStatus.FAILED
        assert recorded.error is not None and "does not exist" in recorded.error
