"""Celery configuration: broker transport, queues and routing, each following from an
invariant in ARCHITECTURE.md.

Queues: one render queue per engine, `render.<engine>` (engine work: GPU workers for
maya1, CPU for piper), and `assemble` (mastering and encoding, CPU workers). A job's
render messages go to its engine's queue, and a worker consumes only its own engine's
(`--queues render` names it), so no worker is handed a job it cannot render. Messages
carry ids only; the database is the record and every task may run twice. Results are
not stored: job state lives in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kombu import Exchange, Queue

from pipeline.config import Settings
from pipeline.engines import ENGINES
from pipeline.errors import InputError
from workers.dispatch import (
    ASSEMBLE_TASK,
    FINALIZE_TASK,
    RENDER_QUEUE,
    WEBHOOK_TASK,
    WEBHOOKS_QUEUE,
    render_queue,
    speech_queue,
)

ASSEMBLE_QUEUE = "assemble"
QUEUES = (RENDER_QUEUE, ASSEMBLE_QUEUE, WEBHOOKS_QUEUE)
DEAD_LETTER_EXCHANGE = "voicebatch.dlx"
DEAD_LETTER_QUEUE = "voicebatch.dead"
# A message redelivered this often (its worker keeps dying) is dead-lettered, not looped.
DELIVERY_LIMIT = 20


def is_amqp(url: str) -> bool:
    """Whether `url` names a RabbitMQ broker (else Redis)."""
    return url.startswith(("amqp://", "amqps://"))


def render_queues() -> list[str]:
    """Every engine's render queue."""
    return [render_queue(name) for name in sorted(ENGINES)]


def worker_queues(queues: Sequence[str], engine: str) -> list[str]:
    """The broker queues a worker running `engine` consumes for the `--queues` it was
    given: `render` is its engine's render queue (`render.<engine>`, also accepted as
    such), `assemble` the assembly queue. Another engine's render queue is refused: this
    worker could not render its jobs."""
    unknown = [q for q in queues if q not in QUEUES and q not in render_queues()]
    if not queues or unknown:
        raise InputError(
            f"unknown queue {', '.join(unknown) or '(none)'}: use {' and/or '.join(QUEUES)}"
        )
    own = render_queue(engine)
    other = [q for q in queues if q.startswith(f"{RENDER_QUEUE}.") and q != own]
    if other:
        raise InputError(
            f"this worker runs engine {engine}: it renders from {own} (--queues render), "
            f"not {', '.join(other)}; set VOICEBATCH_ENGINE for that queue's workers"
        )
    mapped = [own if q == RENDER_QUEUE else q for q in queues]
    return list(dict.fromkeys(mapped))


def speech_queues(broker_url: str) -> list[Queue]:
    """Every engine's speech queue: the render workers of that engine consume it on a
    consumer of their own (workers.speech). Not durable, not dead-lettered: a request
    is only worth answering while its client waits (VOICEBATCH_SPEECH_WAIT_SECONDS)."""
    names = [speech_queue(name) for name in sorted(ENGINES)]
    kind = "topic" if is_amqp(broker_url) else "direct"
    return [
        Queue(name, Exchange(name, type=kind), routing_key=name, durable=False) for name in names
    ]


def task_queues(broker_url: str) -> list[Queue]:
    """The queues the tasks are routed to (and, on RabbitMQ, the dead-letter queue)."""
    names = [*render_queues(), ASSEMBLE_QUEUE, WEBHOOKS_QUEUE]
    if not is_amqp(broker_url):
        return [
            *(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in names),
            *speech_queues(broker_url),
        ]
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
        for name in names
    ]
    dead = Queue(
        DEAD_LETTER_QUEUE,
        Exchange(DEAD_LETTER_EXCHANGE, type="fanout"),
        routing_key="#",
        queue_arguments={"x-queue-type": "quorum"},
    )
    return [*queues, *speech_queues(broker_url), dead]


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
        "task_queues": task_queues(settings.broker_url),
        # Render messages name their engine's queue when they are sent (dispatch.py).
        "task_default_queue": render_queue(settings.engine),
        "task_routes": {
            ASSEMBLE_TASK: {"queue": ASSEMBLE_QUEUE, "routing_key": ASSEMBLE_QUEUE},
            FINALIZE_TASK: {"queue": ASSEMBLE_QUEUE, "routing_key": ASSEMBLE_QUEUE},
            WEBHOOK_TASK: {"queue": WEBHOOKS_QUEUE, "routing_key": WEBHOOKS_QUEUE},
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
