"""Starting a worker process: `voicebatch worker` calls run_worker."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from celery.signals import worker_process_init, worker_ready, worker_shutting_down

from pipeline.batching import BatchingEngine
from pipeline.config import Settings
from pipeline.engines import Engine
from pipeline.errors import InputError
from pipeline.state import store
from pipeline.state.cut_off import release_process_assemblies
from pipeline.state.db import transaction
from workers import metrics
from workers.app import VoicebatchCelery, create_celery, declare_dead_letters
from workers.celery_config import RENDER_QUEUE, render_queue, worker_queues
from workers.speech import SpeechConsumer
from workers.spot import SpotNotice, SpotWatcher, effective_grace
from workers.stop import WorkerStop

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)
POOLS = ("prefork", "threads", "solo")
DEFAULT_THREADS = 4


def _batching_note(engine: Engine) -> str:
    if not isinstance(engine, BatchingEngine):
        return ""
    batcher = engine.batcher
    budget = f", token budget {batcher.token_budget}" if batcher.token_budget else ""
    return (
        f"; dynamic batcher: up to {batcher.max_batch} chunks, "
        f"{batcher.max_wait * 1000:.0f} ms wait{budget}"
    )


def render_threads(engine: Engine, settings: Settings) -> int:
    """Task threads for a threads-pool render worker. Behind a dynamic batcher each thread
    holds one message of `task_chunks` chunks, so twice a batch's worth of threads keeps
    one batch generating while the next fills (and the last one's audio is stored)."""
    if not isinstance(engine, BatchingEngine):
        return DEFAULT_THREADS
    return max(DEFAULT_THREADS, 2 * math.ceil(engine.batcher.max_batch / settings.task_chunks))


def _speech_note(engine: Engine, speech: Engine) -> str:
    if speech is engine:
        return ", in the batcher's realtime lane" if isinstance(engine, BatchingEngine) else ""
    inner = engine.inner if isinstance(engine, BatchingEngine) else engine
    processes = getattr(inner, "processes", 0)
    return (
        f", in this process (batch rendering in {processes} process(es) at nice "
        f"{getattr(inner, 'niceness', 0)})"
    )


def run_worker(
    settings: Settings,
    *,
    queues: Sequence[str],
    pool: str,
    concurrency: int | None = None,
    loglevel: str = "INFO",
    name: str | None = None,
) -> None:
    """Check everything a worker needs, then run a Celery worker until it is told to stop.

    `concurrency` None: for the threads pool, enough task threads to keep the engine's
    batches full (`render_threads`); for prefork, one child per core."""
    # `render` is this worker's engine's own render queue (`render.<engine>`).
    consumed = worker_queues(queues, settings.engine)
    queues = [RENDER_QUEUE if q == render_queue(settings.engine) else q for q in consumed]
    if pool not in POOLS:
        raise InputError(f"unknown pool {pool!r}: use one of {', '.join(POOLS)}")
    if pool == "prefork" and settings.worker_metrics_port:
        # Children count into files the main process serves (prometheus multiprocess
        # mode); must be set before prometheus_client is first imported, which
        # create_celery does (see workers.metrics).
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="voicebatch-metrics-")
        )
    app = create_celery(settings)
    declare_dead_letters(app)
    # Database reachable and migrated, stores open: fail before starting.
    resources = app.context.resources
    if RENDER_QUEUE in queues:
        if pool == "prefork":
            # Each child loads its own engine, before its first task.
            worker_process_init.connect(lambda **_: app.context.resources.engine, weak=False)
        else:
            # Celery's logging is not set up yet: say it on stderr, where its banner goes
            print(f"loading engine {settings.engine}...", file=sys.stderr, flush=True)
            # Speech requests on a consumer of their own (workers.speech) when Redis
            # carries their audio: the engine is loaded for that (engines.priority).
            resources.serves_speech = bool(settings.resolved_redis_url)
            started = time.perf_counter()
            engine = resources.engine
            print(
                f"loaded engine {engine.name} ({engine.model_version}) in "
                f"{time.perf_counter() - started:.1f} s{_batching_note(engine)}",
                file=sys.stderr,
                flush=True,
            )
            if resources.serves_speech:
                # Speech requests on a consumer of their own, ahead of the batch messages
                # Celery's threads hold (workers.speech).
                speech = SpeechConsumer(app)
                speech.start()
                worker_shutting_down.connect(lambda **_: speech.stop(), weak=False)
                print(
                    f"speech: {speech.queue_name}, {speech.threads} thread(s)"
                    f"{_speech_note(resources.engine, resources.speech_engine)}",
                    file=sys.stderr,
                    flush=True,
                )
    if concurrency is None:
        if pool == "prefork":
            concurrency = max(1, os.cpu_count() or 1)
        elif RENDER_QUEUE in queues:
            concurrency = render_threads(resources.engine, settings)
        else:
            concurrency = DEFAULT_THREADS
    if settings.worker_metrics_port:
        info = metrics.ProcessInfo(settings, gpus=RENDER_QUEUE in queues)
        app.metrics.prepare(engine=settings.engine if RENDER_QUEUE in queues else None)
        metrics.serve(settings.worker_metrics_port, info=info)
    _bound_the_stop(app, prefork=pool == "prefork")
    if settings.spot_provider != "none":
        _watch_spot(settings, app.metrics.spot_notices)
    hostname = name or f"{'+'.join(queues)}-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(consumed),
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            loglevel,
            "--hostname",
            hostname,
            "--without-mingle",
            "--without-gossip",
        ]
    )


def _bound_the_stop(app: VoicebatchCelery, *, prefork: bool) -> WorkerStop:
    """On SIGTERM (or a spot notice) Celery stops taking messages; running tasks hand
    their messages back at their next turn, and whatever still runs when the grace is
    nearly over is cut off: its leases released, its message requeued, the worker gone
    by the deadline, with either pool (workers.stop). The grace is
    VOICEBATCH_WORKER_GRACE_SECONDS, capped by the spot provider's notice."""
    grace = effective_grace(app.settings)
    if grace < app.settings.worker_grace_seconds:
        print(
            f"stop grace {grace:.0f} s: VOICEBATCH_WORKER_GRACE_SECONDS "
            f"({app.settings.worker_grace_seconds}) does not fit in a "
            f"{app.settings.spot_provider} spot notice",
            file=sys.stderr,
            flush=True,
        )
    # A cold shutdown (SIGQUIT, a second Ctrl-C) waits this long before cancelling.
    app.conf.worker_soft_shutdown_timeout = grace

    def release() -> int:
        # Render leases by owner; assembly leases by this process's worker id, which
        # assembly tasks never register (an assemble worker has no render owners).
        owners = list(app.active_owners)
        with transaction(app.context.resources.factory) as session:
            released = sum(store.release_leases(session, owner=owner) for owner in owners)
            return released + release_process_assemblies(session)

    stop = WorkerStop(grace=grace, draining=app.draining, release=release)
    worker_shutting_down.connect(lambda **_: stop.request(), weak=False)
    worker_ready.connect(lambda sender, **_: stop.attach(sender), weak=False)
    stop.watch(child=False)
    if prefork:
        # Each pool child drains and cuts itself off too: only the main process hears
        # the signal, and only a child can release the leases its tasks hold.
        worker_process_init.connect(lambda **_: stop.watch(child=True), weak=False)
    return stop


def _watch_spot(settings: Settings, notices: Counter) -> None:
    def drain(notice: SpotNotice) -> None:
        notices.labels(notice.provider, notice.kind).inc()
        os.kill(os.getpid(), signal.SIGTERM)  # the same drain as a SIGTERM from outside

    def hint(notice: SpotNotice) -> None:
        notices.labels(notice.provider, notice.kind).inc()  # counted; work goes on

    SpotWatcher(
        settings.spot_provider,
        on_notice=drain,
        on_hint=hint,
        base_url=settings.spot_metadata_url,
        poll_seconds=settings.spot_poll_seconds,
    ).start()
