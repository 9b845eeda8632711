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
from typing import TYPE_CHECKING, Any

from celery.exceptions import Reject
from sqlalchemy.exc import DBAPIError

from pipeline.assemble.book import finalize_job
from pipeline.assemble.items import assemble_item
from pipeline.backoff import backoff_delay, backoff_delays
from pipeline.batching import BatchingEngine
from pipeline.engines import Engine
from pipeline.errors import InputError, NotFoundError, PermanentError, RetryableError
from pipeline.render.leases import worker_id
from pipeline.render.messages import render_chunk_ids
from pipeline.render.renderer import ChunkRenderer, RenderStats
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus, JobStatus
from workers import metrics
from workers.dispatch import ASSEMBLE_TASK, FINALIZE_TASK, RENDER_TASK, CeleryDispatcher

if TYPE_CHECKING:
    from workers.app import VoicebatchCelery

log = logging.getLogger(__name__)
REQUEUE_PAUSE_SECONDS = 5.0


def _count(stats: RenderStats) -> None:
    for outcome in ("rendered", "cached", "failed", "lost"):
        metrics.CHUNKS.labels(outcome).inc(getattr(stats, outcome))
    metrics.AUDIO_SECONDS.inc(stats.audio_seconds)
    metrics.ENGINE_SECONDS.inc(stats.engine_seconds)
    metrics.BATCH_SPLITS.inc(stats.oom_splits)


def _count_batcher(engine: Engine) -> None:
    if not isinstance(engine, BatchingEngine):
        return
    totals = engine.batcher.stats
    metrics.BATCHER_BATCHES.set(totals.batches)
    metrics.BATCHER_REQUESTS.set(totals.requests)
    metrics.BATCHER_STAGE_SECONDS.labels("generate").set(totals.stage_one_seconds)
    metrics.BATCHER_STAGE_SECONDS.labels("decode").set(totals.stage_two_seconds)


def _requeue_later(name: str, exc: Exception) -> None:
    """Back to the queue after a pause (jittered, so a fleet that failed together does not
    return together). On RabbitMQ each hand-back counts toward the queue's delivery limit;
    a message past it is dead-lettered and the reconciler publishes its work again."""
    log.warning("%s: %s; requeued", name, exc)
    time.sleep(backoff_delay(3, base=REQUEUE_PAUSE_SECONDS / 4, cap=REQUEUE_PAUSE_SECONDS))
    raise Reject(str(exc), requeue=True) from exc


def render_chunks(app: VoicebatchCelery, job_id: str, chunk_ids: list[str]) -> None:
    runtime = app.runtime
    dispatcher = CeleryDispatcher(app)
    renderer = ChunkRenderer(
        factory=runtime.factory,
        store_=runtime.chunk_store,
        engine=runtime.engine,
        settings=runtime.settings,
        owner=worker_id(),  # per task: a graceful stop hands back only this task's leases
        index=runtime.index,
    )
    ids = [uuid.UUID(c) for c in chunk_ids]
    settings = runtime.settings
    # Chunks that went back to pending (a retryable failure) or that someone else holds
    # (a duplicate of this message, or a dead worker's lease) are looked at again until
    # every chunk is final; max_attempts stops a chunk that keeps failing.
    deadline = time.monotonic() + settings.lease_seconds * (settings.max_attempts + 1) + 60
    app.active_owners.add(renderer.owner)
    try:
        while True:
            outcome = render_chunk_ids(renderer, job_id=uuid.UUID(job_id), chunk_ids=ids)
            if outcome.assembling:
                dispatcher.assemble(uuid.UUID(job_id), outcome.assembling)
            if outcome.retry_in is None:
                break
            if app.draining.is_set():
                raise Reject("worker stopping: message handed back", requeue=True)
            if time.monotonic() > deadline:
                raise RetryableError(f"chunks of job {job_id} still not final; message requeued")
            time.sleep(outcome.retry_in)
    finally:
        app.active_owners.discard(renderer.owner)
        _count(renderer.stats)
        _count_batcher(renderer.engine)


def assemble(app: VoicebatchCelery, job_id: str, item_id: str) -> None:
    runtime = app.runtime
    job_uuid, item_uuid = uuid.UUID(job_id), uuid.UUID(item_id)
    with transaction(runtime.factory) as session:
        job = store.get_job(session, job_uuid)
        if job.status.final or job.output_uri is None:
            return
        output = runtime.output_store(job.output_uri)
    try:
        result = assemble_item(
            runtime.factory, item_id=item_uuid, chunk_store=runtime.chunk_store, output_store=output
        )
        metrics.ITEMS.labels(str(result.status)).inc()
    except PermanentError as exc:
        # Its audio cannot be assembled (a chunk's object does not match its record):
        # the item fails, the rest of the job goes on.
        log.error("item %s of job %s failed: %s", item_id, job_id, exc)
        with transaction(runtime.factory) as session:
            store.fail_item(session, item_id=item_uuid, error=exc.message)
        metrics.ITEMS.labels(str(ItemStatus.FAILED)).inc()
    with transaction(runtime.factory) as session:
        claimed = store.claim_finalization(session, job_id=job_uuid)
        # An earlier run may have claimed it and then failed to publish: publish again
        # (finalize_job is idempotent) whenever the job waits in `assembling`.
        waiting = not claimed and store.get_job(session, job_uuid).status == JobStatus.ASSEMBLING
        open_items = store.items_in_assembly(session, job_id=job_uuid)
    if claimed or (waiting and not open_items):
        CeleryDispatcher(app).finalize(job_uuid)


def finalize(app: VoicebatchCelery, job_id: str) -> None:
    runtime = app.runtime
    job_uuid = uuid.UUID(job_id)
    with transaction(runtime.factory) as session:
        job = store.get_job(session, job_uuid)
        if job.output_uri is None:
            return
        output = runtime.output_store(job.output_uri)
    try:
        result = finalize_job(
            runtime.factory, job_id=job_uuid, chunk_store=runtime.chunk_store, output_store=output
        )
    except PermanentError as exc:
        log.error("job %s failed at its final step: %s", job_id, exc)
        with transaction(runtime.factory) as session:
            store.fail_job(session, job_id=job_uuid, error=exc.message)
        metrics.JOBS.labels(str(JobStatus.FAILED)).inc()
        return
    metrics.JOBS.labels(str(result.status)).inc()


def _adapter(app: VoicebatchCelery, name: str, body: Any) -> Any:
    """The task as Celery runs it. Passing trouble (database, storage, broker) is tried
    again in place with backoff and jitter for VOICEBATCH_TASK_RETRY_SECONDS, then the
    message goes back to the queue; it is never dropped. Input errors are never retried."""

    def run(*args: Any) -> None:
        started = time.perf_counter()
        delays = backoff_delays(budget=app.settings.task_retry_seconds)
        try:
            while True:
                try:
                    body(app, *args)
                    return
                except NotFoundError as exc:
                    # The job is gone (withdrawn at submit, or another deployment's message).
                    log.error("%s%s: %s; message dropped", name, tuple(args), exc)
                    return
                except InputError as exc:
                    # Not this worker's to do (it runs another engine): another worker may be.
                    _requeue_later(name, exc)
                except (RetryableError, DBAPIError) as exc:
                    delay = next(delays, None)
                    if delay is None or app.draining.is_set():
                        _requeue_later(name, exc)
                        return
                    metrics.TASK_RETRIES.labels(name).inc()
                    log.warning("%s: %s; trying again in %.1f s", name, exc, delay)
                    time.sleep(delay)
        finally:
            metrics.TASK_SECONDS.labels(name).observe(time.perf_counter() - started)

    run.__name__ = name.rsplit(".", 1)[-1]
    return run


def register(app: VoicebatchCelery) -> None:
    """Register the tasks on `app` (not shared with other apps in the process)."""
    for name, body in (
        (RENDER_TASK, render_chunks),
        (ASSEMBLE_TASK, assemble),
        (FINALIZE_TASK, finalize),
    ):
        app.task(name=name, ignore_result=True, shared=False)(_adapter(app, name, body))
