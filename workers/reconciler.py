"""`voicebatch reconcile`: publish again what the database says is due and the broker lost.

Run one per deployment (compose service `reconciler`). Each round is one transaction
that finds the due work (pipeline.state.reconcile) and commits its claims, then publishes it;
a round that cannot publish leaves the work due for the next one.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from datetime import timedelta
from typing import Any

from celery import Celery

from pipeline.config import Settings
from pipeline.errors import NotFoundError
from pipeline.state import scoped, store
from pipeline.state.db import transaction
from pipeline.state.reconcile import DueWork, ReconcilerLock, find_due_work
from pipeline.state.webhooks import due_deliveries
from workers.app import VoicebatchCelery, create_celery
from workers.celery_config import (
    ASSEMBLE_QUEUE,
    DEAD_LETTER_QUEUE,
    is_amqp,
    render_queue,
    render_queues,
)
from workers.dispatch import (
    ASSEMBLE_TASK,
    FINALIZE_TASK,
    RENDER_TASK,
    WEBHOOKS_QUEUE,
    CeleryDispatcher,
)
from workers.metrics import ProcessInfo
from workers.metrics import serve as serve_metrics

log = logging.getLogger(__name__)
TASKS = (RENDER_TASK, ASSEMBLE_TASK, FINALIZE_TASK)


def queue_depth(app: Celery, name: str) -> int:
    """Messages waiting in a queue (0 if it does not exist: Redis drops empty lists)."""
    try:
        with app.connection_for_write() as connection:
            declared: Any = connection.default_channel.queue_declare(queue=name, passive=True)
            return int(declared.message_count)
    except Exception as exc:
        if "NOT_FOUND" in str(exc) or "no queue" in str(exc).lower():
            return 0
        raise


def replay_dead_letters(app: VoicebatchCelery, *, limit: int = 1000) -> int:
    """RabbitMQ: publish again the messages the quorum queues dead-lettered while their job
    is still active (a message handed back through a long outage passes the delivery
    limit), and drop those whose job is final. Published first, then acknowledged: a
    crash in between publishes twice, which every task is built to survive."""
    if not is_amqp(app.settings.broker_url or ""):
        return 0
    (dead,) = [q for q in app.conf.task_queues if q.name == DEAD_LETTER_QUEUE]
    replayed = 0
    with app.connection_for_write() as connection:
        bound = dead(connection.default_channel)
        for _ in range(limit):
            message = bound.get(no_ack=False, accept=["json"])
            if message is None:
                break
            name, (args, *_) = message.headers.get("task"), message.decode()
            if name not in TASKS or not args:
                log.error("dead letter %r is no voicebatch task; dropped", name)
                message.ack()
                continue
            try:
                job_id = uuid.UUID(str(args[0]))
                with transaction(app.context.resources.factory) as session:
                    job = store.get_job(session, job_id)
                    final, engine = job.status.final, job.engine
            except (ValueError, NotFoundError):
                final, engine = True, ""  # no such job: nothing left to do for it
            if not final:
                # a render message goes back to its job's engine's queue
                route = {"queue": render_queue(engine)} if name == RENDER_TASK else {}
                app.send_task(name, args=args, **route)
                replayed += 1
            message.ack()
    return replayed


def sweep_webhooks(app: VoicebatchCelery, dispatcher: CeleryDispatcher) -> int:
    """Queue the webhook deliveries that are due and held by nobody (the outbox's relay:
    one whose message was lost, or whose job ended where nothing published it), when the
    webhooks queue is empty (a backlog holds their messages already). How many."""
    if queue_depth(app, WEBHOOKS_QUEUE) != 0:
        return 0
    with transaction(app.context.resources.factory) as session:
        due = due_deliveries(session)
    if due:
        dispatcher.webhooks(due)
        log.info("webhooks: %d due deliveries queued", len(due))
    return len(due)


def reconcile_once(
    app: VoicebatchCelery, *, grace: timedelta, lock: ReconcilerLock | None = None
) -> DueWork | None:
    """One round: replay dead letters, find what is due, claim what needs claiming, publish
    it all. With `lock`, only while this reconciler holds it (another one acting, the
    round is skipped: None)."""
    if lock is not None and not lock.held():
        log.info("another reconciler is acting; this one waits")
        return None
    settings = app.settings
    replayed = replay_dead_letters(app)
    idle_queue = all(queue_depth(app, name) == 0 for name in render_queues())
    # Items and jobs claimed and never started are published again only when the
    # assemble queue is empty (a backlog holds their messages already); ones whose
    # assembly lease ran out, whatever it holds (their message was taken).
    idle_assembly = queue_depth(app, ASSEMBLE_QUEUE) == 0
    with transaction(app.context.resources.factory) as session:
        due = find_due_work(
            session,
            grace=grace,
            group_size=settings.task_chunks,
            max_attempts=settings.max_attempts,
            include_idle_pending=idle_queue,
            include_unstarted_assembly=idle_assembly,
        )
        engines = scoped.job_engines(session, job_ids=due.render)
    dispatcher = CeleryDispatcher(app)
    for job_id, groups in due.render.items():
        dispatcher.render(job_id, groups, engine=engines.get(job_id))
    for job_id, item_id in due.assemble:
        dispatcher.assemble(job_id, [item_id])
    for job_id in due.finalize:
        dispatcher.finalize(job_id)
    sweep_webhooks(app, dispatcher)
    due.replayed_messages = replayed
    if due.chunks or due.assemble or due.finalize or due.failed_chunks or replayed:
        log.warning(
            "reconciled: %d chunks republished, %d items to assemble, %d jobs to finalize, "
            "%d chunks failed after too many attempts, %d assemblies given up on, "
            "%d dead letters replayed",
            due.chunks,
            len(due.assemble),
            len(due.finalize),
            due.failed_chunks,
            due.gave_up_assemblies,
            replayed,
        )
    return due


def run_reconciler(
    settings: Settings, *, interval: float, grace: float, once: bool
) -> DueWork | None:
    """Reconcile every `interval` seconds until SIGTERM or SIGINT; with `once`, one round
    whose findings are returned."""
    app = create_celery(settings)
    if settings.worker_metrics_port:  # its actions and last round, for the operator
        serve_metrics(
            settings.worker_metrics_port, info=ProcessInfo(settings, gpus=False, priced=False)
        )
    factory = app.context.resources.factory
    bind = factory.kw["bind"]
    lock = ReconcilerLock(bind)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while True:
            try:
                due = reconcile_once(app, grace=timedelta(seconds=grace), lock=lock)
                app.metrics.count_reconcile(due)
            except Exception as exc:  # the next round tries again
                app.metrics.reconcile_rounds.labels("failed").inc()
                if once:
                    raise
                log.warning("reconcile round failed: %s", exc)
            if once:
                return due
            if stop.wait(interval):
                return None
    finally:
        lock.release()
