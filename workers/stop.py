"""A worker's stop, bounded by its grace period, with any pool (threads, solo, prefork).

Celery's warm shutdown (SIGTERM, a first Ctrl-C) stops taking messages, then waits for
the running tasks with no limit: `worker_soft_shutdown_timeout` bounds only a cold
shutdown (SIGQUIT), and only the main process hears the signal, so under prefork the
pool children render on as if nothing happened. The bound is therefore ours:

- when Celery starts its warm shutdown (`worker_shutting_down`, sent in the main
  process; a spot notice sends the worker SIGTERM) the stop is requested on a flag that
  every process of the worker shares: a multiprocessing Event made before the pool forks;
- each process that runs tasks (the main one for threads and solo, each child for
  prefork) sets its own `draining` flag at once: tasks take no new chunks and hand their
  messages back at their next turn, and a worker whose tasks end in time exits as Celery
  does (its messages requeued by the tasks themselves);
- a task still running when the grace is nearly over (a long engine batch cannot be
  interrupted) is cut off: the process releases the leases its tasks hold, so other
  workers take the chunks at once, and exits. A pool child's exit makes Celery requeue
  its message (`task_reject_on_worker_lost`); the main process requeues every message it
  still holds itself, then closes its broker connection, which hands back whatever the
  connection still has unacknowledged (kombu's Redis channel reads a pending BRPOP and
  restores its unacknowledged messages on close; RabbitMQ requeues them when the
  connection goes). Children stop one margin before the main process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def requeue_held_messages() -> int:
    """Hand every message this worker holds and has not acknowledged back to its queue
    (received, running, or waiting for a pool child); how many."""
    from celery.worker import state  # the worker's own registry of requests

    handed = 0
    for request in {*state.reserved_requests, *state.active_requests}:
        if request.acknowledged:
            continue
        try:
            request.reject(requeue=True)
            handed += 1
        except Exception as exc:  # the broker is gone: it redelivers when we disconnect
            log.warning("stopping: could not requeue a message: %s", exc)
    return handed


class WorkerStop:
    """One worker's stop: the request every process of it sees, and the deadline by which
    each process still running a task hands back what it holds and exits.

    `release` hands back the leases this process's tasks hold (it returns how many);
    `draining` is this process's flag that tasks read; `exit` ends the process (tests
    replace it)."""

    def __init__(
        self,
        *,
        grace: float,
        draining: threading.Event,
        release: Callable[[], int],
        exit: Callable[[int], Any] = os._exit,
    ) -> None:
        self.grace = max(0.0, grace)
        self.draining = draining
        self.release = release
        self.exit = exit
        # made before the pool forks, so the pool's children share it
        self.requested = multiprocessing.get_context("fork").Event()
        self.consumer: Any = None  # Celery's consumer, once the worker is ready

    def attach(self, consumer: Any) -> None:
        """The worker's consumer (Celery's worker_ready): its broker connection is closed
        last, when the main process is cut off."""
        self.consumer = consumer

    @property
    def margin(self) -> float:
        """Seconds between a child's cut-off, the main process's and the grace's end."""
        return min(1.0, self.grace / 4)

    def request(self) -> None:
        """The stop starts now (main process: Celery's worker_shutting_down)."""
        self.requested.set()

    def watch(self, *, child: bool) -> threading.Thread:
        """In this process, in the background: drain when the stop is requested, and at
        the deadline hand back what is held and exit. `child`: a prefork pool child."""
        thread = threading.Thread(
            target=self._run, args=(child,), name="stop-deadline", daemon=True
        )
        thread.start()
        return thread

    def _run(self, child: bool) -> None:
        self.requested.wait()
        started = time.monotonic()
        self.draining.set()
        cut_off = self.grace - self.margin * (2 if child else 1)
        time.sleep(max(0.0, cut_off - (time.monotonic() - started)))
        self.hand_back_and_exit(child=child)

    def _close_broker(self) -> None:
        connection = getattr(self.consumer, "connection", None)
        if connection is None:
            return
        try:
            connection.close()
        except Exception as exc:  # gone already: the broker redelivers unacked messages
            log.warning("stopping: closing the broker connection: %s", exc)

    def hand_back_and_exit(self, *, child: bool) -> None:
        """Release this process's leases, requeue its messages (main process), and exit."""
        try:
            released = self.release()
        except Exception as exc:  # the database is down: the leases expire instead
            log.warning("stopping: could not release leases: %s", exc)
            released = 0
        requeued = 0 if child else requeue_held_messages()
        if not child:
            self._close_broker()
        log.warning(
            "stopping: the %.1f s grace is up: released %d leases%s; exiting",
            self.grace,
            released,
            "" if child else f", requeued {requeued} messages",
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        self.exit(0)
