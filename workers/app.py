"""The Celery app: built from the settings, with the voicebatch tasks registered on it.

The configuration is in workers.celery_config, the task bodies in workers.tasks, the
retry policy that wraps each one in workers.retry_policy. The app hands each task a
WorkerContext (workers.context), opened once per worker process.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from pipeline.config import Settings
from pipeline.errors import InputError
from workers.celery_config import DEAD_LETTER_QUEUE, celery_config
from workers.context import WorkerContext, WorkerResources
from workers.dispatch import CeleryDispatcher
from workers.metrics import WorkerMetrics, failure_reason, worker_metrics
from workers.queue_age import PUBLISHED_AT, stamp_published_at
from workers.retry_policy import RetryPolicy
from workers.tasks import TASKS


def declare_dead_letters(app: Celery) -> None:
    """RabbitMQ: make sure the dead-letter exchange and queue exist before any message can
    be dead-lettered (a message dead-lettered to a missing exchange is dropped)."""
    for queue in app.conf.task_queues:
        if queue.name == DEAD_LETTER_QUEUE:
            with app.connection_for_write() as connection:
                queue(connection.default_channel).declare()


class VoicebatchCelery(Celery):
    """A Celery app that carries the voicebatch settings and builds one WorkerContext per
    process (after a fork the database pool must not be shared)."""

    settings: Settings
    metrics: WorkerMetrics
    retry_policy: RetryPolicy  # wraps every task
    _context: WorkerContext | None = None
    _context_pid: int = 0
    # Lease owners of the render tasks running in this process, and whether the worker
    # is stopping (SIGTERM, a spot notice): then tasks hand their messages back.
    active_owners: set[str]
    draining: threading.Event

    @property
    def context(self) -> WorkerContext:
        """This process's WorkerContext, opened on first use."""
        if self._context is None or self._context_pid != os.getpid():
            self._context = WorkerContext(
                resources=WorkerResources.open(self.settings),
                dispatcher=CeleryDispatcher(self),
                metrics=self.metrics,
                draining=self.draining,
                active_owners=self.active_owners,
            )
            self._context_pid = os.getpid()
        return self._context


def create_celery(settings: Settings) -> VoicebatchCelery:
    """The app for `settings`, with the voicebatch tasks registered."""
    if not settings.broker_url:
        raise InputError(
            "no broker configured: set VOICEBATCH_BROKER_URL (redis://host:6379/0 or "
            "amqp://user:pass@host//)"
        )
    app = VoicebatchCelery("voicebatch", set_as_current=False)
    app.settings = settings
    app.active_owners = set()
    app.draining = threading.Event()
    app.metrics = worker_metrics()
    app.conf.update(celery_config(settings))
    app.retry_policy = RetryPolicy(
        budget_seconds=settings.task_retry_seconds, draining=app.draining, metrics=app.metrics
    )
    # Every message this process publishes says when (the exporter's oldest-message age).
    before_task_publish.connect(stamp_published_at, weak=False, dispatch_uid=PUBLISHED_AT)
    # Not shared with other apps in the process.
    for name, body in TASKS.items():
        task = app.retry_policy.wrap(name, body, lambda: app.context)
        app.task(name=name, ignore_result=True, shared=False)(counting_failures(name, task))
    return app


def counting_failures(name: str, run: Callable[..., None]) -> Callable[..., None]:
    """`run`, counting each run that ends in an exception (a requeue, a crash) by reason."""

    @functools.wraps(run)
    def task(*args: Any) -> None:
        try:
            run(*args)
        except BaseException as exc:
            worker_metrics().task_failures.labels(name, failure_reason(exc)).inc()
            raise

    return task
