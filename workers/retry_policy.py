"""The retry policy that wraps every task: the task bodies only do the work.

Passing trouble (database, storage, broker) is tried again in place with backoff and
jitter for VOICEBATCH_TASK_RETRY_SECONDS, then the message goes back to the queue; it is
never dropped. A job that is gone drops its message. An input error is not retried and
not requeued: no worker can do better (render queues are per engine, so a message
reaches only workers of its job's engine). The message drivers record input errors they
meet during the work on the chunk, item or job they concern, so the job's status shows
them; one that reaches this policy is logged and its message dropped, never looped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, TypeVar

from celery.exceptions import Reject
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pipeline.backoff import backoff_delay, backoff_delays
from pipeline.errors import InputError, RecordGone, RetryableError
from workers.metrics import WorkerMetrics, failure_reason

log = logging.getLogger(__name__)
REQUEUE_PAUSE_SECONDS = 5.0

Context = TypeVar("Context")


def _requeue_later(name: str, exc: Exception) -> None:
    """Back to the queue after a pause (jittered, so a fleet that failed together does not
    return together). On RabbitMQ each hand-back counts toward the queue's delivery limit;
    a message past it is dead-lettered and the reconciler publishes its work again."""
    log.warning("%s: %s; requeued", name, exc)
    time.sleep(backoff_delay(3, base=REQUEUE_PAUSE_SECONDS / 4, cap=REQUEUE_PAUSE_SECONDS))
    raise Reject(str(exc), requeue=True) from exc


@dataclass(frozen=True)
class RetryPolicy:
    """How long passing trouble is tried again in place (`budget_seconds`), the worker's
    stopping flag (a stopping worker hands messages back at once), and where tries and
    run times are counted."""

    budget_seconds: float
    draining: threading.Event
    metrics: WorkerMetrics

    def wrap(
        self,
        name: str,
        body: Callable[Concatenate[Context, ...], None],
        context: Callable[[], Context],
    ) -> Callable[..., None]:
        """The task as Celery runs it: `body(context(), *args)` under this policy. The
        context is fetched on each try, so trouble opening it is retried like the rest."""

        def run(*args: Any) -> None:
            started = time.perf_counter()
            delays = backoff_delays(budget=self.budget_seconds)
            try:
                while True:
                    try:
                        body(context(), *args)
                        return
                    except RecordGone as exc:
                        # The database says the job is gone (withdrawn at submit, or another
                        # deployment's message). A missing object is no reason to drop one.
                        log.error("%s%s: %s; message dropped", name, tuple(args), exc)
                        return
                    except InputError as exc:
                        # Retrying, or another worker, cannot fix it: acknowledged, not looped.
                        log.error("%s%s: %s; message dropped", name, tuple(args), exc)
                        return
                    except (RetryableError, DBAPIError, PoolTimeout) as exc:
                        delay = next(delays, None)
                        if delay is None or self.draining.is_set():
                            _requeue_later(name, exc)
                            return
                        self.metrics.task_retries.labels(name, failure_reason(exc)).inc()
                        log.warning("%s: %s; trying again in %.1f s", name, exc, delay)
                        time.sleep(delay)
            finally:
                self.metrics.task_seconds.labels(name).observe(time.perf_counter() - started)

        run.__name__ = name.rsplit(".", 1)[-1]
        return run
