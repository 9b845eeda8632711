"""The Celery app: broker, queues and the settings the invariants call for.

Queues: `render` (engine work, GPU workers) and `assemble` (mastering and encoding, CPU
workers). Messages carry ids only; the database is the record and every task may run
twice. Results are not stored: job state lives in the database.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from pipeline.config import Settings
from pipeline.errors import InputError
from workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)

RENDER_QUEUE = "render"
ASSEMBLE_QUEUE = "assemble"
QUEUES = (RENDER_QUEUE, ASSEMBLE_QUEUE)
DEAD_LETTER_EXCHANGE = "voicebatch.dlx"
DEAD_LETTER_QUEUE = "voicebatch.dead"
# A message redelivered this often (its worker keeps dying) is dead-lettered, not looped.
DELIVERY_LIMIT = 20


def is_amqp(url: str) -> bool:
    return url.startswith(("amqp://", "amqps://"))


def _queues(broker_url: str) -> list[Queue]:
    if not is_amqp(broker_url):
        return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
    # RabbitMQ: replicated quorum queues; messages that cannot be delivered go to a
    # dead-letter queue someone can inspect instead of vanishing.
    arguments = {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-delivery-limit": DELIVERY_LIMIT,
    }
    # Topic exchanges: Celery's native delayed delivery (used with quorum queues) cannot
    # route through direct ones.
    queues = [
        Queue(name, Exchange(name, type="topic"), routing_key=name, queue_arguments=arguments)
        for name in QUEUES
    ]
    dead = Queue(
        DEAD_LETTER_QUEUE,
        Exchange(DEAD_LETTER_EXCHANGE, type="fanout"),
        routing_key="#",
        queue_arguments={"x-queue-type": "quorum"},
    )
    return [*queues, dead]


def declare_dead_letters(app: Celery) -> None:
    """RabbitMQ: make sure the dead-letter exchange and queue exist before any message can
    be dead-lettered (a message dead-lettered to a missing exchange is dropped)."""
    for queue in app.conf.task_queues:
        if queue.name == DEAD_LETTER_QUEUE:
            with app.connection_for_write() as connection:
                queue(connection.default_channel).declare()


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings; each one follows from an invariant in ARCHITECTURE.md."""
    assert settings.broker_url is not None
    transport: dict[str, Any] = {}
    if is_amqp(settings.broker_url):
        transport["confirm_publish"] = True  # a publish returns once RabbitMQ has it
    else:
        # Redis redelivers an unacknowledged message after this long: well above the
        # longest task, or a slow task would run twice at once.
        transport["visibility_timeout"] = settings.visibility_timeout_seconds
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,  # ack after the work: a dead worker's message is redelivered
        "task_reject_on_worker_lost": True,  # ... also when its pool child is killed
        "worker_prefetch_multiplier": 1,  # nothing sits reserved in a worker that may die
        "task_queues": _queues(settings.broker_url),
        "task_default_queue": RENDER_QUEUE,
        "task_routes": {
            "voicebatch.render_chunks": {"queue": RENDER_QUEUE, "routing_key": RENDER_QUEUE},
            "voicebatch.assemble_item": {"queue": ASSEMBLE_QUEUE, "routing_key": ASSEMBLE_QUEUE},
            "voicebatch.finalize_job": {"queue": ASSEMBLE_QUEUE, "routing_key": ASSEMBLE_QUEUE},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_delivery_mode": "persistent",
        # On SIGTERM: stop taking work, give running tasks this long (spot grace period).
        "worker_soft_shutdown_timeout": float(settings.worker_grace_seconds),
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_send_task_events": True,  # Flower's live view
        "task_send_sent_event": True,
    }


class VoicebatchCelery(Celery):
    """A Celery app that carries the voicebatch settings and builds one WorkerRuntime per
    process (after a fork the database pool must not be shared)."""

    settings: Settings
    _runtime: WorkerRuntime | None = None
    _runtime_pid: int = 0
    # Lease owners of the render tasks running in this process, and whether the worker
    # is stopping (SIGTERM, a spot notice): then tasks hand their messages back.
    active_owners: set[str]
    draining: threading.Event

    @property
    def runtime(self) -> WorkerRuntime:
        if self._runtime is None or self._runtime_pid != os.getpid():
            self._runtime = WorkerRuntime.open(self.settings)
            self._runtime_pid = os.getpid()
        return self._runtime


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
    app.conf.update(celery_config(settings))
    from workers.tasks import register

    register(app)
    return app
