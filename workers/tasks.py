"""The three tasks: thin adapters that take ids, call the pipeline and publish what follows.

render_chunks -> (last chunk of an item) assemble_item -> (last item) finalize_job.
Each may run twice, or twice at once: the pipeline's conditional state changes decide
who does what, and a task that finds its work done returns quietly. A message is
acknowledged only when its work is final, or handed back to the queue (never dropped)
when something it needs is passing trouble.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Concatenate

from celery.exceptions import Reject

from pipeline.assemble.book import finalize_job
from pipeline.assemble.items import assemble_item
from pipeline.batching import BatchingEngine
from pipeline.engines import Engine
from pipeline.errors import PermanentError, RetryableError
from pipeline.render.leases import worker_id
from pipeline.render.messages import render_chunk_ids
from pipeline.render.renderer import ChunkRenderer, RenderStats
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus, JobStatus
from workers.context import WorkerContext
from workers.dispatch import ASSEMBLE_TASK, FINALIZE_TASK, RENDER_TASK
from workers.metrics import WorkerMetrics

log = logging.getLogger(__name__)


def _count(metrics: WorkerMetrics, stats: RenderStats) -> None:
    for outcome in ("rendered", "cached", "failed", "lost"):
        metrics.chunks.labels(outcome).inc(getattr(stats, outcome))
    metrics.audio_seconds.inc(stats.audio_seconds)
    metrics.engine_seconds.inc(stats.engine_seconds)
    metrics.batch_splits.inc(stats.oom_splits)


def _count_batcher(metrics: WorkerMetrics, engine: Engine) -> None:
    if not isinstance(engine, BatchingEngine):
        return
    totals = engine.batcher.stats
    metrics.batcher_batches.set(totals.batches)
    metrics.batcher_requests.set(totals.requests)
    metrics.batcher_stage_seconds.labels("generate").set(totals.stage_one_seconds)
    metrics.batcher_stage_seconds.labels("decode").set(totals.stage_two_seconds)


def render_chunks(ctx: WorkerContext, job_id: str, chunk_ids: list[str]) -> None:
    """Render a group of chunks; publish assemble_item for each item they finish."""
    resources = ctx.resources
    renderer = ChunkRenderer(
        factory=resources.factory,
        store_=resources.chunk_store,
        engine=resources.engine,
        settings=resources.settings,
        owner=worker_id(),  # per task: a graceful stop hands back only this task's leases
        index=resources.index,
    )
    ids = [uuid.UUID(c) for c in chunk_ids]
    settings = resources.settings
    # Chunks that went back to pending (a retryable failure) or that someone else holds
    # (a duplicate of this message, or a dead worker's lease) are looked at again until
    # every chunk is final; max_attempts stops a chunk that keeps failing.
    deadline = time.monotonic() + settings.lease_seconds * (settings.max_attempts + 1) + 60
    ctx.active_owners.add(renderer.owner)
    try:
        while True:
            outcome = render_chunk_ids(renderer, job_id=uuid.UUID(job_id), chunk_ids=ids)
            if outcome.assembling:
                ctx.dispatcher.assemble(uuid.UUID(job_id), outcome.assembling)
            if outcome.retry_in is None:
                break
            if ctx.draining.is_set():
                raise Reject("worker stopping: message handed back", requeue=True)
            if time.monotonic() > deadline:
                raise RetryableError(f"chunks of job {job_id} still not final; message requeued")
            time.sleep(outcome.retry_in)
    finally:
        ctx.active_owners.discard(renderer.owner)
        _count(ctx.metrics, renderer.stats)
        _count_batcher(ctx.metrics, renderer.engine)


def assemble(ctx: WorkerContext, job_id: str, item_id: str) -> None:
    """Assemble one item; publish finalize_job when it was the job's last."""
    resources = ctx.resources
    job_uuid, item_uuid = uuid.UUID(job_id), uuid.UUID(item_id)
    with transaction(resources.factory) as session:
        job = store.get_job(session, job_uuid)
        if job.status.final or job.output_uri is None:
            return
        output = resources.output_store(job.output_uri)
    try:
        result = assemble_item(
            resources.factory,
            item_id=item_uuid,
            chunk_store=resources.chunk_store,
            output_store=output,
        )
        ctx.metrics.items.labels(str(result.status)).inc()
    except PermanentError as exc:
        # Its audio cannot be assembled (a chunk's object does not match its record):
        # the item fails, the rest of the job goes on.
        log.error("item %s of job %s failed: %s", item_id, job_id, exc)
        with transaction(resources.factory) as session:
            store.fail_item(session, item_id=item_uuid, error=exc.message)
        ctx.metrics.items.labels(str(ItemStatus.FAILED)).inc()
    with transaction(resources.factory) as session:
        claimed = store.claim_finalization(session, job_id=job_uuid)
        # An earlier run may have claimed it and then failed to publish: publish again
        # (finalize_job is idempotent) whenever the job waits in `assembling`.
        waiting = not claimed and store.get_job(session, job_uuid).status == JobStatus.ASSEMBLING
        open_items = store.items_in_assembly(session, job_id=job_uuid)
    if claimed or (waiting and not open_items):
        ctx.dispatcher.finalize(job_uuid)


def finalize(ctx: WorkerContext, job_id: str) -> None:
    """Write the job's book and manifest and mark it done (or failed)."""
    resources = ctx.resources
    job_uuid = uuid.UUID(job_id)
    with transaction(resources.factory) as session:
        job = store.get_job(session, job_uuid)
        if job.output_uri is None:
            return
        output = resources.output_store(job.output_uri)
    try:
        result = finalize_job(
            resources.factory,
            job_id=job_uuid,
            chunk_store=resources.chunk_store,
            output_store=output,
        )
    except PermanentError as exc:
        log.error("job %s failed at its final step: %s", job_id, exc)
        with transaction(resources.factory) as session:
            store.fail_job(session, job_id=job_uuid, error=exc.message)
        ctx.metrics.jobs.labels(str(JobStatus.FAILED)).inc()
        return
    ctx.metrics.jobs.labels(str(result.status)).inc()


TaskBody = Callable[Concatenate[WorkerContext, ...], None]

# The task bodies by the names Celery registers them under (messages in flight and other
# workers depend on these names).
TASKS: dict[str, TaskBody] = {
    RENDER_TASK: render_chunks,
    ASSEMBLE_TASK: assemble,
    FINALIZE_TASK: finalize,
}
