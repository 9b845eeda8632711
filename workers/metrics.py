"""Prometheus metrics of the workers (and the reconciler), served on --metrics-port.

prometheus_client picks its multiprocess mode once, when it is first imported, from
PROMETHEUS_MULTIPROC_DIR, which `voicebatch worker` sets (prefork pool) only after this
module is loaded: so prometheus_client is imported when the metrics are first made
(`worker_metrics()`, called by create_celery) or served, never when this module loads.

Labels stay bounded: task names, outcomes, exception class names, engine names and the
worker's host name; never a job, item, chunk or tenant id.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from workers.gpu import gpu_metric_families

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

# Spot notices by (provider, kind), made at 0 so the first notice is an increase.
SPOT_KINDS = (("aws", "interruption"), ("aws", "rebalance"), ("gcp", "preemption"))
ITEM_OUTCOMES = ("done", "failed")
JOB_OUTCOMES = ("done", "partially_failed", "failed", "cancelled")
# Webhook attempts' labels, made at 0 (pipeline.state.webhooks.EVENTS and
# pipeline.webhooks.delivery.METRIC_OUTCOMES; a test keeps them equal).
WEBHOOK_EVENTS = ("job.done", "job.partially_failed", "job.failed", "job.cancelled")
WEBHOOK_OUTCOMES = ("delivered", "failed", "timeout", "gone", "refused", "exhausted")
RECONCILE_ACTIONS = (
    "chunks_republished",
    "items_assembled",
    "jobs_finalized",
    "chunks_failed",
    "dead_letters_replayed",
    "assemblies_given_up",
)


def worker_name() -> str:
    """The `worker` label: this machine's (or pod's) host name."""
    return socket.gethostname()


def failure_reason(exc: BaseException) -> str:
    """A bounded label for why a task was retried or failed: the exception's class name
    (a requeue's cause, when the exception is Celery's Reject)."""
    cause = exc.__cause__ if type(exc).__name__ == "Reject" and exc.__cause__ else exc
    return type(cause).__name__


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
    task_failures: Counter
    batch_splits: Counter
    batcher_batches: Gauge
    batcher_requests: Gauge
    batcher_max_batch: Gauge
    batcher_stage_seconds: Gauge
    reconcile_actions: Counter
    reconcile_rounds: Counter
    reconciler_last_round: Gauge
    qa_flags: Counter
    qa_error_rate: Histogram
    qa_takes: Counter
    webhook_attempts: Counter
    webhook_seconds: Histogram
    speech_sentences: Counter
    speech_lane_wait: Histogram

    def __init__(self) -> None:
        # Lazy: see the module docstring (multiprocess mode is chosen at this import).
        from prometheus_client import Counter, Gauge, Histogram

        self.chunks = Counter(
            "voicebatch_chunks_total",
            "Chunks finished by this worker, by outcome (rendered, cached, failed; lost: "
            "its lease was taken over by another worker before it could commit).",
            ["outcome"],
        )
        self.audio_seconds = Counter(
            "voicebatch_audio_seconds_total",
            "Seconds of audio rendered, by engine and worker (host name).",
            ["engine", "worker"],
        )
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
        for provider, kind in SPOT_KINDS:
            self.spot_notices.labels(provider, kind)
        self.task_retries = Counter(
            "voicebatch_task_retries_total",
            "Passing trouble (database, storage, broker) a task tried again in place, by task "
            "and reason (the exception's class).",
            ["task", "reason"],
        )
        self.task_failures = Counter(
            "voicebatch_task_failures_total",
            "Task runs that ended in an exception (the message requeued), by task and reason.",
            ["task", "reason"],
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
        self.batcher_max_batch = Gauge(
            "voicebatch_batcher_max_batch",
            "Most chunks the dynamic batcher puts in one batch (mean size over this: the fill).",
            multiprocess_mode="max",
        )
        self.batcher_stage_seconds = Gauge(
            "voicebatch_batcher_stage_seconds",
            "Engine time by stage (generate: LLM tokens; decode: SNAC), overlapped across batches.",
            ["stage"],
            multiprocess_mode="sum",
        )
        self.reconcile_actions = Counter(
            "voicebatch_reconcile_actions_total",
            "What the acting reconciler did, by action.",
            ["action"],
        )
        for action in RECONCILE_ACTIONS:
            self.reconcile_actions.labels(action)
        self.reconcile_rounds = Counter(
            "voicebatch_reconcile_rounds_total",
            "Reconciler rounds, by result (acted, standby: another holds the lock, failed).",
            ["result"],
        )
        self.reconciler_last_round = Gauge(
            "voicebatch_reconciler_last_round_timestamp_seconds",
            "When this reconciler last finished a round as the acting one (Unix time).",
            multiprocess_mode="max",
        )
        # QA while rendering (pipeline.qa.live): every checked take counts
        self.qa_flags = Counter(
            "voicebatch_qa_flags_total",
            "Flags QA while rendering raised on checked takes, by kind (silence, noise, "
            "cut_off, missing_words, repeated_words, invented_words, unintelligible).",
            ["flag"],
        )
        self.qa_error_rate = Histogram(
            "voicebatch_qa_error_rate",
            "Word error rate of each take QA while rendering checked (errors per word).",
            buckets=(0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
        )
        self.qa_takes = Counter(
            "voicebatch_qa_takes_total",
            "Takes QA while rendering checked, by outcome (first: a chunk's first take; "
            "retake: rendered again; flagged: a chunk recorded still flagged).",
            ["outcome"],
        )
        # Webhook attempts (pipeline.webhooks.delivery); the backlog is the exporter's
        self.webhook_attempts = Counter(
            "voicebatch_webhook_attempts_total",
            "Webhook delivery attempts, by event and outcome (delivered, failed, timeout, "
            "gone: 410, refused: SSRF guard, exhausted: the last try failed, given up).",
            ["event", "outcome"],
        )
        for event in WEBHOOK_EVENTS:
            for outcome in WEBHOOK_OUTCOMES:
                self.webhook_attempts.labels(event, outcome)
        self.webhook_seconds = Histogram(
            "voicebatch_webhook_delivery_seconds",
            "Duration of each webhook delivery attempt (every hop, to the receiver's answer).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
        )
        # Speech requests on a render worker (workers.speech)
        self.speech_sentences = Counter(
            "voicebatch_speech_sentences_total",
            "Sentences of speech requests, by engine and source (cache: from the chunk "
            "cache or another renderer's claim; rendered: by this worker's engine).",
            ["engine", "source"],
        )
        self.speech_lane_wait = Histogram(
            "voicebatch_speech_lane_wait_seconds",
            "A speech sentence's wait in the batcher's realtime lane: queued to its engine "
            "call starting.",
            ["engine"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5),
        )

    def webhook_attempt(self, *, event: str, outcome: str, seconds: float) -> None:
        """One recorded webhook attempt (a pipeline.webhooks.delivery.AttemptObserver)."""
        self.webhook_attempts.labels(event, outcome).inc()
        self.webhook_seconds.observe(seconds)

    def count_qa(self, stats: Any) -> None:
        """A render task's QA (a pipeline.render.stats.RenderStats)."""
        for flag in stats.qa_flags:
            self.qa_flags.labels(flag).inc()
        for rate in stats.qa_error_rates:
            self.qa_error_rate.observe(rate)
        self.qa_takes.labels("first").inc(stats.qa_checked - stats.qa_retakes)
        self.qa_takes.labels("retake").inc(stats.qa_retakes)
        self.qa_takes.labels("flagged").inc(stats.qa_flagged)

    def prepare(self, *, engine: str | None) -> None:
        """A worker's series, made at 0 when it starts: a counter that appears at its first
        value shows no increase to rate(), and a ratio over a missing series has no data.
        `engine`: a render worker's engine (its audio seconds), None for assembly."""
        for outcome in ("rendered", "cached", "failed", "lost"):
            self.chunks.labels(outcome)
        for item in ITEM_OUTCOMES:
            self.items.labels(item)
        for status in JOB_OUTCOMES:
            self.jobs.labels(status)
        if engine is not None:
            self.audio_seconds.labels(engine, worker_name())
            for outcome in ("first", "retake", "flagged"):
                self.qa_takes.labels(outcome)

    def count_reconcile(self, due: Any) -> None:
        """One reconciler round's findings (a pipeline.state.reconcile.DueWork, or None when
        another reconciler holds the lock)."""
        if due is None:
            self.reconcile_rounds.labels("standby").inc()
            return
        for action, amount in zip(
            RECONCILE_ACTIONS,
            (
                due.chunks,
                len(due.assemble),
                len(due.finalize),
                due.failed_chunks,
                due.replayed_messages,
                getattr(due, "gave_up_assemblies", 0),
            ),
            strict=True,
        ):
            self.reconcile_actions.labels(action).inc(amount)
        self.reconcile_rounds.labels("acted").inc()
        self.reconciler_last_round.set(time.time())


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """This process's metrics: made once, since the default registry takes each name once."""
    return WorkerMetrics()


class ProcessInfo:
    """Collected at each scrape: the worker's hourly price, its start time (a crash loop
    restarts it often) and, for render workers, its GPUs (workers.gpu). `priced` False
    (the reconciler): no price, since it is no worker of the fleet."""

    def __init__(self, settings: Settings, *, gpus: bool, priced: bool = True) -> None:
        self.price = settings.worker_hourly_price if priced else None
        self.started = time.time()
        self.gpus = gpus

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        if self.price is not None:
            yield GaugeMetricFamily(
                "voicebatch_worker_hourly_price",
                "What this worker costs an hour (VOICEBATCH_WORKER_HOURLY_PRICE; 0: not counted).",
                value=self.price,
            )
        yield GaugeMetricFamily(
            "voicebatch_process_started_timestamp_seconds",
            "When this worker process started (Unix time).",
            value=self.started,
        )
        if self.gpus:
            yield from gpu_metric_families()


def serve(port: int, *, info: ProcessInfo | None = None) -> None:
    """Serve the metrics on `port`; in multiprocess mode, those every pool child wrote;
    `info` adds the process's price, start time and GPUs."""
    # Lazy: see the module docstring.
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    if info is not None:
        registry.register(info)
    start_http_server(port, registry=registry)
