"""`voicebatch reconcile`: publish again what the database says is due and the broker lost.

Run one per deployment (compose service `reconciler`). Each round is one transaction
that finds the due work (pipeline.reconcile) and commits its claims, then publishes it;
a round that cannot publish leaves the work due for the next one.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from typing import Any

from celery import Celery

from pipeline.config import Settings
from pipeline.reconcile import DueWork, find_due_work
from pipeline.state.db import transaction
from workers.app import RENDER_QUEUE, VoicebatchCelery, create_celery
from workers.dispatch import CeleryDispatcher

log = logging.getLogger(__name__)


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


def reconcile_once(app: VoicebatchCelery, *, grace: timedelta) -> DueWork:
    """One round: find what is due, claim what needs claiming, publish it all."""
    settings = app.settings
    idle_queue = queue_depth(app, RENDER_QUEUE) == 0
    with transaction(app.runtime.factory) as session:
        due = find_due_work(
            session,
            grace=grace,
            group_size=settings.task_chunks,
            max_attempts=settings.max_attempts,
            include_idle_pending=idle_queue,
        )
    dispatcher = CeleryDispatcher(app)
    for job_id, groups in due.render.items():
        dispatcher.render(job_id, groups)
    for job_id, item_id in due.assemble:
        dispatcher.assemble(job_id, [item_id])
    for job_id in due.finalize:
        dispatcher.finalize(job_id)
    if due.chunks or due.assemble or due.finalize or due.failed_chunks:
        log.warning(
            "reconciled: %d chunks republished, %d items to assemble, %d jobs to finalize, "
            "%d chunks failed after too many attempts",
            due.chunks,
            len(due.assemble),
            len(due.finalize),
            due.failed_chunks,
        )
    return due


def run_reconciler(
    settings: Settings, *, interval: float, grace: float, once: bool
) -> DueWork | None:
    """Reconcile every `interval` seconds until SIGTERM or SIGINT; with `once`, one round
    whose findings are returned."""
    app = create_celery(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while True:
        try:
            due = reconcile_once(app, grace=timedelta(seconds=grace))
        except Exception as exc:  # the next round tries again
            if once:
                raise
            log.warning("reconcile round failed: %s", exc)
        if once:
            return due
        if stop.wait(interval):
            return None
