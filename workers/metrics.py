"""Prometheus metrics of the workers, served on --metrics-port.

prometheus_client picks its multiprocess mode once, when it is first imported, from
PROMETHEUS_MULTIPROC_DIR, which `voicebatch worker` sets (prefork pool) only after this
module is loaded: so prometheus_client is imported when the metrics are first made
(`worker_metrics()`, called by create_celery) or served, never when this module loads.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram


class WorkerMetrics:
    """The workers' metrics, registered in Prometheus' default registry."""

    chunks: Counter
    audio_seconds: Counter
    engine_seconds: Counter
    task_seconds: Histogram
    items: Counter
    jobs: Counter
    spot_notices: Counter
    task_retries: Counter
    batch_splits: Counter
    batcher_batches: Gauge
    batcher_requests: Gauge
    batcher_stage_seconds: Gauge

    def __init__(self) -> None:
        # Lazy: see the module docstring (multiprocess mode is chosen at this import).
        from prometheus_client import Counter, Gauge, Histogram

        self.chunks = Counter(
            "voicebatch_chunks_total",
            "Chunks finished by this worker, by outcome (rendered, cached, failed, lost).",
            ["outcome"],
        )
        self.audio_seconds = Counter("voicebatch_audio_seconds_total", "Seconds of audio rendered.")
        self.engine_seconds = Counter(
            "voicebatch_engine_seconds_total", "Wall time spent in the engine."
        )
        self.task_seconds = Histogram(
            "voicebatch_task_seconds",
            "Task run time by task.",
            ["task"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
        )
        self.items = Counter("voicebatch_items_total", "Items assembled, by outcome.", ["outcome"])
        self.jobs = Counter(
            "voicebatch_jobs_finished_total", "Jobs finalized, by final status.", ["status"]
        )
        self.spot_notices = Counter(
            "voicebatch_spot_notices_total", "Spot interruption notices seen.", ["provider", "kind"]
        )
        self.task_retries = Counter(
            "voicebatch_task_retries_total",
            "Passing trouble (database, storage, broker) a task tried again in place, by task.",
            ["task"],
        )
        self.batch_splits = Counter(
            "voicebatch_oom_batch_splits_total",
            "Engine batches halved after running out of memory.",
        )
        # The dynamic batcher's totals since the process started (set after each render
        # task; in prefork mode each child reports its own, summed by the multiprocess
        # collector).
        self.batcher_batches = Gauge(
            "voicebatch_batcher_batches",
            "Engine batches the dynamic batcher formed.",
            multiprocess_mode="sum",
        )
        self.batcher_requests = Gauge(
            "voicebatch_batcher_requests",
            "Chunks the dynamic batcher handed to the engine (over batches: the mean batch size).",
            multiprocess_mode="sum",
        )
        self.batcher_stage_seconds = Gauge(
            "voicebatch_batcher_stage_seconds",
            "Engine time by stage (generate: LLM tokens; decode: SNAC), overlapped across batches.",
            ["stage"],
            multiprocess_mode="sum",
        )


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """This process's metrics: made once, since the default registry takes each name once."""
    return WorkerMetrics()


def serve(port: int) -> None:
    """Serve the metrics on `port`; in multiprocess mode, those every pool child wrote."""
    # Lazy: see the module docstring.
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)
