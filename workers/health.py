"""A worker whose engine is broken takes itself out: hands back what it holds, says it is
unhealthy, stops taking work and exits non-zero, so that its supervisor (systemd,
Kubernetes) starts a fresh process with a fresh device context.

What counts as broken is the pipeline's to say (`pipeline.render.failures`: a sticky
device error, the same error on different chunks in a row, a dead batcher thread, a hung
batch); this module only does what a Celery worker process must do about it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import TYPE_CHECKING

from pipeline.errors import EngineBroken
from pipeline.state import store
from pipeline.state.db import transaction
from workers.context import WorkerContext

if TYPE_CHECKING:
    from prometheus_client import Gauge

log = logging.getLogger(__name__)
# How long a warm shutdown may take before the process is ended anyway (a task thread
# stuck in the broken engine never returns).
EXIT_MARGIN_SECONDS = 5.0


@functools.cache
def healthy_gauge() -> Gauge:
    """`voicebatch_worker_healthy`: 1 while this worker's engine works, 0 once it is broken."""
    # Lazy, as every prometheus_client import of the workers (see workers.metrics).
    from prometheus_client import Gauge

    gauge = Gauge(
        "voicebatch_worker_healthy",
        "1 while this worker's engine works; 0 once it is broken and the worker is exiting.",
        multiprocess_mode="min",
    )
    gauge.set(1)
    return gauge


def engine_broken(ctx: WorkerContext, exc: EngineBroken) -> None:
    """Take this worker out (see the module doc). Returns at once; the process ends
    shortly after, with EngineBroken's exit code."""
    log.critical("engine broken: %s; handing back all work and exiting", exc)
    healthy_gauge().set(0)
    ctx.draining.set()  # running tasks hand their messages back instead of waiting
    owners = list(ctx.active_owners)
    try:
        with transaction(ctx.resources.factory) as session:
            released = sum(store.release_leases(session, owner=owner) for owner in owners)
        log.warning("engine broken: released %d leased chunks for other workers", released)
    except Exception as error:  # the leases expire instead, and the reconciler hands them on
        log.error("engine broken: could not release the leases: %s", error)
    _exit(exc.exit_code, ctx.resources.settings.worker_grace_seconds)


def _exit(code: int, grace: float) -> None:
    # lazy: billiard and celery's worker state matter only in a worker process
    from billiard.process import current_process
    from celery.signals import worker_shutdown
    from celery.worker import state

    if current_process().name != "MainProcess":
        # A prefork pool child: its message is requeued (task_reject_on_worker_lost) and
        # the pool starts a new child, with a new engine.
        logging.shutdown()
        os._exit(code)
    # Warm shutdown, as on SIGTERM but with this exit code: the consumer stops taking
    # messages and the running tasks hand theirs back (draining is set).
    # `app.worker_main` drops the exit code Celery's shutdown carries, so it is applied
    # once the worker has stopped (tasks joined, unacknowledged messages restored).
    worker_shutdown.connect(lambda **_: _exit_now(code, late=False), weak=False)
    state.should_stop = code
    timer = threading.Timer(grace + EXIT_MARGIN_SECONDS, _exit_now, args=(code,))
    timer.daemon = True
    timer.start()


def _exit_now(code: int, late: bool = True) -> None:
    if late:
        log.critical("the worker did not stop in time; exiting with %d", code)
    else:
        log.critical("the worker stopped; exiting with %d for its supervisor", code)
    logging.shutdown()
    os._exit(code)
