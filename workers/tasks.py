"""The three tasks: thin adapters that take ids, call the pipeline and publish what follows.

render_chunks -> (last chunk of an item) assemble_item -> (last item) finalize_job.
Each may run twice, or twice at once: the pipeline's conditional state changes decide
who does what, and a task that finds its work done returns quietly. A message is
acknowledged only when its work is final, or handed back to the queue (never dropped)
when something it needs is passing trouble.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Concatenate

from celery.exceptions import Reject

from pipeline.assemble.leases import AssemblyLease
from pipeline.assemble.messages import assemble_item_message, finalize_job_message
from pipeline.batching import BatchingEngine
from pipeline.engines import Engine
from pipeline.errors import EngineBroken, HandedBack
from pipeline.qa.live import LiveQa
from pipeline.render.leases import worker_id
from pipeline.render.messages import render_message
from pipeline.render.renderer import ChunkRenderer, RenderStats
from pipeline.state import verdicts
from pipeline.state.assembly import Reopened
from pipeline.state.db import transaction
from pipeline.state.webhooks import pending_deliveries
from pipeline.webhooks.delivery import deliver, early_by
from workers import health
from workers.context import WorkerContext
from workers.dispatch import ASSEMBLE_TASK, FINALIZE_TASK, RENDER_TASK, WEBHOOK_TASK
from workers.metrics import WorkerMetrics, worker_name

log = logging.getLogger(__name__)


def _count(metrics: WorkerMetrics, stats: RenderStats, engine: str) -> None:
    for outcome in ("rendered", "cached", "failed", "lost"):
        metrics.chunks.labels(outcome).inc(getattr(stats, outcome))
    metrics.audio_seconds.labels(engine, worker_name()).inc(stats.audio_seconds)
    metrics.engine_seconds.inc(stats.engine_seconds)
    metrics.batch_splits.inc(stats.oom_splits)


def _count_batcher(metrics: WorkerMetrics, engine: Engine) -> None:
    if not isinstance(engine, BatchingEngine):
        return
    totals = engine.batcher.stats
    metrics.batcher_batches.set(totals.batches)
    metrics.batcher_requests.set(totals.requests)
    metrics.batcher_max_batch.set(engine.batcher.max_batch)
    metrics.batcher_stage_seconds.labels("generate").set(totals.stage_one_seconds)
    metrics.batcher_stage_seconds.labels("decode").set(totals.stage_two_seconds)


def _job_qa(ctx: WorkerContext, job_id: uuid.UUID) -> LiveQa | None:
    """The recogniser, for a job that asked for QA while rendering (pipeline.qa.live)."""
    resources = ctx.resources
    with transaction(resources.factory) as session:
        if not verdicts.wants_qa(session, job_id=job_id):
            return None
    if resources.qa is None:
        log.error("job %s asked for QA, but this worker has no VOICEBATCH_ASR_MODEL_DIR", job_id)
    return resources.qa


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
        health=resources.health,
        on_hung=lambda exc: health.engine_broken(ctx, exc),
        qa=_job_qa(ctx, uuid.UUID(job_id)),
    )
    health.healthy_gauge()
    ctx.active_owners.add(renderer.owner)
    try:
        render_message(
            renderer,
            job_id=uuid.UUID(job_id),
            chunk_ids=[uuid.UUID(c) for c in chunk_ids],
            assemble=ctx.dispatcher.assemble,
            stopping=ctx.draining,
        )
    except HandedBack as exc:
        raise Reject(exc.message, requeue=True) from exc
    except EngineBroken as exc:
        # No chunk is to blame: hand everything back and exit, for a fresh process.
        health.engine_broken(ctx, exc)
        raise Reject(exc.message, requeue=True) from exc
    finally:
        ctx.active_owners.discard(renderer.owner)
        _count(ctx.metrics, renderer.stats, renderer.engine.name)
        ctx.metrics.count_qa(renderer.stats)
        _count_batcher(ctx.metrics, renderer.engine)


def _assembly_lease(ctx: WorkerContext) -> AssemblyLease:
    settings = ctx.resources.settings
    return AssemblyLease(
        owner=worker_id(),
        seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        journal=settings.assembly_journal,
        delay_seconds=settings.assembly_delay_ms / 1000,
    )


def _render_again(ctx: WorkerContext, job_id: uuid.UUID, reopened: Reopened) -> None:
    """Chunks whose objects vanished went back to pending: forget them in the cache
    index (it would hand the missing object out again) and publish them."""
    if not reopened.chunk_ids:
        return
    if ctx.resources.index is not None:
        ctx.resources.index.forget(reopened.content_hashes)
    size = ctx.resources.settings.task_chunks
    ids = reopened.chunk_ids
    groups = [ids[i : i + size] for i in range(0, len(ids), size)]
    ctx.dispatcher.render(job_id, groups, engine=reopened.engine)


def assemble(ctx: WorkerContext, job_id: str, item_id: str) -> None:
    """Assemble one item; publish finalize_job when it was the job's last."""
    resources = ctx.resources
    outcome = assemble_item_message(
        resources.factory,
        job_id=uuid.UUID(job_id),
        item_id=uuid.UUID(item_id),
        chunk_store=resources.chunk_store,
        output_store_for=resources.output_store,
        lease=_assembly_lease(ctx),
    )
    if outcome is None:
        return
    _render_again(ctx, uuid.UUID(job_id), outcome.reopened)
    ctx.metrics.items.labels(outcome.status).inc()
    if outcome.finalize:
        ctx.dispatcher.finalize(uuid.UUID(job_id))


def finalize(ctx: WorkerContext, job_id: str) -> None:
    """Write the job's book, manifest, QA results and read-along EPUB, and mark it done
    (or failed)."""
    resources = ctx.resources
    model_dir = resources.settings.asr_model_dir
    outcome = finalize_job_message(
        resources.factory,
        job_id=uuid.UUID(job_id),
        chunk_store=resources.chunk_store,
        output_store_for=resources.output_store,
        lease=_assembly_lease(ctx),
        # the recogniser's name for the QA summary: the render workers made the verdicts
        qa_model=model_dir.name if model_dir is not None else None,
    )
    _render_again(ctx, uuid.UUID(job_id), outcome.reopened)
    if outcome.status is not None:
        ctx.metrics.jobs.labels(str(outcome.status)).inc()
        # Its webhook was written with its final state; queue it now (the reconciler's
        # sweep queues it if this publish is lost).
        with transaction(resources.factory) as session:
            deliveries = pending_deliveries(session, job_id=uuid.UUID(job_id))
        if deliveries:
            ctx.dispatcher.webhooks(deliveries)


def deliver_webhook(ctx: WorkerContext, delivery_id: str) -> None:
    """One attempt at a webhook delivery; a failed one is queued again for its retry."""
    resources = ctx.resources
    attempted = deliver(
        resources.factory,
        delivery_id=uuid.UUID(delivery_id),
        settings=resources.settings,
        observer=ctx.metrics,
    )
    wait = (
        attempted.retry_in
        if attempted is not None
        else early_by(resources.factory, delivery_id=uuid.UUID(delivery_id))
    )
    if wait is not None:
        ctx.dispatcher.webhooks([uuid.UUID(delivery_id)], countdown=wait.total_seconds())


TaskBody = Callable[Concatenate[WorkerContext, ...], None]

# The task bodies by the names Celery registers them under (messages in flight and other
# workers depend on these names).
TASKS: dict[str, TaskBody] = {
    RENDER_TASK: render_chunks,
    ASSEMBLE_TASK: assemble,
    FINALIZE_TASK: finalize,
    WEBHOOK_TASK: deliver_webhook,
}
