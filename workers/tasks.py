"""The three tasks: thin adapters that take ids, call the pipeline and publish what follows.

render_chunks -> (last chunk of an item) assemble_item -> (last item) finalize_job.
Each may run twice, or twice at once: the pipeline's conditional state changes decide
who does what, and a task that finds its work done returns quietly.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from celery.exceptions import Reject

from pipeline.assemble import assemble_item, finalize_job
from pipeline.errors import InputError, RetryableError
from pipeline.render import ChunkRenderer, RenderStats, render_chunk_ids, worker_id
from pipeline.state import store
from pipeline.state.db import transaction
from workers import metrics
from workers.dispatch import ASSEMBLE_TASK, FINALIZE_TASK, RENDER_TASK, CeleryDispatcher

if TYPE_CHECKING:
    from workers.app import VoicebatchCelery

log = logging.getLogger(__name__)
RETRY_PAUSE_SECONDS = 5.0


def _count(stats: RenderStats) -> None:
    for outcome in ("rendered", "cached", "failed", "lost"):
        metrics.CHUNKS.labels(outcome).inc(getattr(stats, outcome))
    metrics.AUDIO_SECONDS.inc(stats.audio_seconds)
    metrics.ENGINE_SECONDS.inc(stats.engine_seconds)


def _requeue_later(name: str, exc: RetryableError) -> None:
    """A passing failure (database, storage): back to the queue after a pause, never lost."""
    log.warning("%s: %s; requeued", name, exc)
    time.sleep(RETRY_PAUSE_SECONDS)
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
    # Retryable chunk failures go back to pending; try again here, after the backoff,
    # until they are done or out of attempts (fail_chunk stops them at max_attempts).
    for _ in range(runtime.settings.max_attempts + 1):
        outcome = render_chunk_ids(renderer, job_id=uuid.UUID(job_id), chunk_ids=ids)
        if outcome.ready_items:
            dispatcher.assemble(uuid.UUID(job_id), outcome.ready_items)
        if outcome.retry_in is None:
            break
        time.sleep(outcome.retry_in)
    _count(renderer.stats)


def assemble(app: VoicebatchCelery, job_id: str, item_id: str) -> None:
    runtime = app.runtime
    with transaction(runtime.factory) as session:
        job = store.get_job(session, uuid.UUID(job_id))
        if job.status.final or job.output_uri is None:
            return
        output = runtime.output_store(job.output_uri)
    result = assemble_item(
        runtime.factory,
        item_id=uuid.UUID(item_id),
        chunk_store=runtime.chunk_store,
        output_store=output,
    )
    metrics.ITEMS.labels(str(result.status)).inc()
    with transaction(runtime.factory) as session:
        claimed = store.claim_finalization(session, job_id=uuid.UUID(job_id))
    if claimed:
        CeleryDispatcher(app).finalize(uuid.UUID(job_id))


def finalize(app: VoicebatchCelery, job_id: str) -> None:
    runtime = app.runtime
    with transaction(runtime.factory) as session:
        job = store.get_job(session, uuid.UUID(job_id))
        if job.output_uri is None:
            return
        output = runtime.output_store(job.output_uri)
    result = finalize_job(
        runtime.factory,
        job_id=uuid.UUID(job_id),
        chunk_store=runtime.chunk_store,
        output_store=output,
    )
    metrics.JOBS.labels(str(result.status)).inc()


def _adapter(app: VoicebatchCelery, name: str, body: Any) -> Any:
    def run(*args: Any) -> None:
        started = time.perf_counter()
        try:
            body(app, *args)
        except RetryableError as exc:
            _requeue_later(name, exc)
        except InputError as exc:
            # Never retried: a missing job, a worker running the wrong engine. Logged, acked.
            log.error("%s%s: %s", name, tuple(args), exc)
        finally:
            metrics.TASK_SECONDS.labels(name).observe(time.perf_counter() - started)

    run.__name__ = name.rsplit(".", 1)[-1]
    return run


def register(app: VoicebatchCelery) -> None:
    """Register the tasks on `app`."""
    for name, body in (
        (RENDER_TASK, render_chunks),
        (ASSEMBLE_TASK, assemble),
        (FINALIZE_TASK, finalize),
    ):
        app.task(name=name, ignore_result=True, shared=False)(_adapter(app, name, body))
