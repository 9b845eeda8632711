"""Starting a worker process: `voicebatch worker` calls run_worker."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Sequence

from pipeline.config import Settings
from pipeline.errors import InputError

log = logging.getLogger(__name__)
POOLS = ("prefork", "threads", "solo")


def run_worker(
    settings: Settings,
    *,
    queues: Sequence[str],
    pool: str,
    concurrency: int,
    loglevel: str = "INFO",
    name: str | None = None,
) -> None:
    """Check everything a worker needs, then run a Celery worker until it is told to stop."""
    from workers.app import QUEUES, RENDER_QUEUE

    unknown = [q for q in queues if q not in QUEUES]
    if not queues or unknown:
        raise InputError(
            f"unknown queue {', '.join(unknown) or '(none)'}: use {' and/or '.join(QUEUES)}"
        )
    if pool not in POOLS:
        raise InputError(f"unknown pool {pool!r}: use one of {', '.join(POOLS)}")
    if pool == "prefork" and settings.worker_metrics_port:
        # Children count into files the main process serves (prometheus multiprocess
        # mode); must be set before prometheus_client is first imported.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="voicebatch-metrics-")
        )
    from celery.signals import worker_process_init

    from workers.app import create_celery, declare_dead_letters

    app = create_celery(settings)
    declare_dead_letters(app)
    runtime = app.runtime  # database reachable and migrated, stores open: fail before starting
    if RENDER_QUEUE in queues:
        if pool == "prefork":
            # Each child loads its own engine, before its first task.
            worker_process_init.connect(lambda **_: app.runtime.engine, weak=False)
        else:
            log.info("loading engine %s", settings.engine)
            _ = runtime.engine
    if settings.worker_metrics_port:
        _serve_metrics(settings.worker_metrics_port)
    hostname = name or f"{'+'.join(queues)}-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
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


def _serve_metrics(port: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)
