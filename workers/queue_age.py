"""Queue depth and the age of the oldest message, read from the broker without consuming.

Every message a voicebatch process publishes carries a `published_at` header (Unix time),
stamped by `stamp_published_at` on Celery's before_task_publish signal. On Redis a queue
is a list (one per priority step: kombu's `name`, `name\\x06\\x163`, ...) that Celery
pushes on the left and pops on the right, so its oldest message is the last element,
read with LINDEX without taking it. RabbitMQ gives a queue's depth to a passive
queue.declare but shows no message without delivering it (and a delivery counts
toward a quorum queue's delivery limit), so there the exporter takes the age of the
oldest waiting work from the database instead (workers.exporter).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

PUBLISHED_AT = "published_at"
# kombu's Redis transport: a queue's list per priority step, joined by this separator.
REDIS_PRIORITY_SEPARATOR = "\x06\x16"
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)


def stamp_published_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """before_task_publish receiver: say when the message was published (kept if set)."""
    if headers is not None:
        headers.setdefault(PUBLISHED_AT, time.time())


@dataclass(frozen=True)
class QueueReading:
    depth: int
    # Seconds since the oldest message was published; None when the broker cannot say
    # (RabbitMQ, or messages from before the header) and 0.0 for an empty queue.
    oldest_age: float | None


def _published_at(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        stamp = json.loads(raw).get("headers", {}).get(PUBLISHED_AT)
        return float(stamp) if stamp is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


class RedisQueues:
    """Reads Celery's queues on a Redis broker (the broker URL's database)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def ping(self) -> None:
        self.client.ping()

    def read(self, name: str, *, now: float | None = None) -> QueueReading:
        now = time.time() if now is None else now
        keys = [name] + [
            f"{name}{REDIS_PRIORITY_SEPARATOR}{step}" for step in REDIS_PRIORITY_STEPS[1:]
        ]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
            pipe.lindex(key, -1)
        answers = pipe.execute()
        depth = sum(int(n) for n in answers[0::2])
        if depth == 0:
            return QueueReading(0, 0.0)
        stamps = [s for s in (_published_at(raw) for raw in answers[1::2]) if s is not None]
        return QueueReading(depth, max(0.0, now - min(stamps)) if stamps else None)


class RabbitQueues:
    """Reads queue depths on a RabbitMQ broker with a passive queue.declare each (a missing
    queue has depth 0). The oldest message's age is not readable here: None."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def ping(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)

    def read(self, name: str, *, now: float | None = None) -> QueueReading:
        from amqp.exceptions import NotFound

        with self.app.connection_for_write() as connection:
            channel = connection.channel()
            try:
                declared: Any = channel.queue_declare(queue=name, passive=True)
                depth = int(declared.message_count)
            except NotFound:
                return QueueReading(0, 0.0)
            finally:
                with contextlib.suppress(Exception):  # closed by the broker (the NOT_FOUND)
                    channel.close()
        return QueueReading(depth, 0.0 if depth == 0 else None)
