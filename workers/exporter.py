"""`voicebatch exporter`: the deployment-wide metrics no single worker can see.

Run one per deployment (compose service `exporter`). Every `interval` seconds it reads:
- each queue's depth and the age of its oldest message, from the broker
  (workers.queue_age; on RabbitMQ, and for messages published without the header, the
  age comes from the database: the oldest pending chunk for `render`, the oldest item
  waiting for assembly for `assemble`);
- jobs by status, open chunks and expired leases, from the database;
- the webhook outbox's undelivered deliveries, those due, the age of the oldest, and how
  long the most overdue one has waited for a sender;
- each chunk's time from enqueue to done, and each job's turnaround, as histograms:
  the rows that finished since the last round (state.monitoring), seen `lag` seconds
  late so that rows committed a little after their timestamp are still counted once;
- whether the database, the broker and the object store answer, and whether a
  reconciler holds its lock.
Prometheus scrapes what the last round found. Each reading fails on its own: with the
database down, the broker's queues are still reported (and `voicebatch_dependency_up`
says which is down).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

from pipeline.config import Settings
from pipeline.errors import RetryableError
from pipeline.state import monitoring
from pipeline.state.db import one_line, ping, transaction
from pipeline.state.models import FINAL_JOB_STATUSES, utcnow
from workers.app import create_celery
from workers.celery_config import ASSEMBLE_QUEUE, RENDER_QUEUE, is_amqp
from workers.context import WorkerResources
from workers.queue_age import QueueReading, RabbitQueues, RedisQueues

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
# The turnaround SLO's threshold (docs/operations.md) is one of these: 3600.
TURNAROUND_BUCKETS = (60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
# Finished chunks (and jobs) one round reads at most; more wait for the next round.
ROWS_PER_ROUND = 20_000
STORAGE_PROBE_KEY = "readyz-probe"


def _redact(url: str) -> str:
    """A broker URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


class ExporterMetrics:
    """The exporter's metrics, in a registry of their own (not the process default)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "voicebatch_queue_depth", "Messages waiting in a queue.", ["queue"], registry=r
        )
        self.queue_age = Gauge(
            "voicebatch_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message (0: the queue is empty).",
            ["queue"],
            registry=r,
        )
        self.jobs = Gauge("voicebatch_jobs", "Jobs by status.", ["status"], registry=r)
        self.open_chunks = Gauge(
            "voicebatch_chunks_open", "Chunks not yet final, by status.", ["status"], registry=r
        )
        self.expired_leases = Gauge(
            "voicebatch_chunk_leases_expired",
            "Leased chunks whose lease ran out (their worker died): to be taken over.",
            registry=r,
        )
        self.chunk_latency = Histogram(
            "voicebatch_chunk_latency_seconds",
            "Time from a chunk's enqueue (its job planned) to its audio stored.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turnaround = Histogram(
            "voicebatch_job_turnaround_seconds",
            "Time from a job's submit to its final status, by final status.",
            ["status"],
            buckets=TURNAROUND_BUCKETS,
            registry=r,
        )
        for status in FINAL_JOB_STATUSES:
            self.turnaround.labels(str(status))
        self.up = Gauge(
            "voicebatch_dependency_up",
            "1 if the dependency answered the exporter's last probe, else 0.",
            ["dependency"],
            registry=r,
        )
        self.lock_held = Gauge(
            "voicebatch_reconciler_lock_held",
            "1 if a reconciler holds its lock (one is acting), else 0.",
            registry=r,
        )
        self.webhooks_pending = Gauge(
            "voicebatch_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered, gone or given up (the outbox's backlog).",
            registry=r,
        )
        self.webhooks_due = Gauge(
            "voicebatch_webhook_deliveries_due",
            "Undelivered webhook deliveries due now: a sender should be at them.",
            registry=r,
        )
        self.webhook_oldest = Gauge(
            "voicebatch_webhook_oldest_undelivered_age_seconds",
            "Age of the oldest undelivered webhook delivery, since its event (0: none).",
            registry=r,
        )
        self.webhook_overdue = Gauge(
            "voicebatch_webhook_oldest_due_seconds",
            "How long the most overdue webhook delivery nobody holds has been due (0: none; "
            "growing: no sender is at the webhooks queue).",
            registry=r,
        )
        self.last_round = Gauge(
            "voicebatch_exporter_last_round_timestamp_seconds",
            "When the exporter last finished a round (Unix time).",
            registry=r,
        )


class Exporter:
    """Reads the broker and the database once a round into `metrics`."""

    def __init__(self, settings: Settings, *, lag_seconds: float = 10.0) -> None:
        self.settings = settings
        self.metrics = ExporterMetrics()
        self.lag = timedelta(seconds=lag_seconds)
        broker = settings.broker_url or ""
        self.broker_url = broker
        app = create_celery(settings)  # says so in one line when no broker is configured
        self.queues: RedisQueues | RabbitQueues = (
            RabbitQueues(app) if is_amqp(broker) else RedisQueues(broker)
        )
        # Every queue the deployment routes to (each engine's render queue, assemble, and
        # on RabbitMQ the dead-letter queue): the configuration's list, not a copy of it.
        self.queue_names = [queue.name for queue in app.conf.task_queues]
        self.resources = WorkerResources.open(settings)
        self.watermark = utcnow() - self.lag

    def check(self) -> None:
        """Start-up: every dependency answers, or one line naming the first that does not."""
        probes: dict[str, tuple[Callable[[], Any], str]] = {
            "broker": (self.queues.ping, _redact(self.broker_url)),
            "database": (lambda: ping(self.resources.factory), "VOICEBATCH_DATABASE_URL"),
            "storage": (self._probe_storage, self.settings.resolved_storage_url),
        }
        for name, (probe, where) in probes.items():
            try:
                probe()
            except Exception as exc:
                raise RetryableError(
                    f"exporter: {name} unreachable at {where}: {one_line(exc)}"
                ) from exc

    def _probe_storage(self) -> None:
        self.resources.chunk_store.exists(STORAGE_PROBE_KEY)

    def poll(self) -> None:
        """One round. A reading that fails leaves its gauges as they were and is logged."""
        now = utcnow()
        self._probe_all()
        backlog = self._guarded("backlog", self._read_database, now)
        for queue in self.queue_names:
            reading = self._guarded(f"queue {queue}", self.queues.read, queue)
            if reading is None:
                continue
            self.metrics.queue_depth.labels(queue).set(reading.depth)
            self.metrics.queue_age.labels(queue).set(self._age(queue, reading, backlog))
        self._guarded("finished rows", self._observe_finished, now)
        self.metrics.last_round.set(time.time())

    def _guarded(self, what: str, read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except Exception as exc:
            log.warning("exporter: reading %s failed: %s", what, one_line(exc))
            return None

    def _probe_all(self) -> None:
        probes = {
            "database": lambda: ping(self.resources.factory),
            "broker": self.queues.ping,
            "storage": self._probe_storage,
        }
        for name, probe in probes.items():
            self.metrics.up.labels(name).set(0 if self._guarded(name, _ok, probe) is None else 1)

    def _read_database(self, now: datetime) -> monitoring.Backlog:
        with transaction(self.resources.factory) as session:
            backlog = monitoring.backlog(session, now=now)
            held = monitoring.reconciler_lock_held(session)
            webhooks = monitoring.webhook_backlog(session, now=now)
        for status, count in backlog.jobs.items():
            self.metrics.jobs.labels(status).set(count)
        for status, count in backlog.open_chunks.items():
            self.metrics.open_chunks.labels(status).set(count)
        self.metrics.expired_leases.set(backlog.expired_leases)
        self.metrics.lock_held.set(1 if held else 0)
        self.metrics.webhooks_pending.set(webhooks.pending)
        self.metrics.webhooks_due.set(webhooks.due)
        self.metrics.webhook_oldest.set(webhooks.oldest_pending_seconds)
        self.metrics.webhook_overdue.set(webhooks.oldest_due_seconds)
        return backlog

    @staticmethod
    def _age(queue: str, reading: QueueReading, backlog: monitoring.Backlog | None) -> float:
        if reading.oldest_age is not None:
            return reading.oldest_age
        if backlog is None:
            return 0.0
        if queue.startswith(RENDER_QUEUE):
            return backlog.oldest_pending_chunk_seconds
        if queue == ASSEMBLE_QUEUE:
            return backlog.oldest_assembling_item_seconds
        return 0.0  # the dead-letter queue: its depth is what matters

    def _observe_finished(self, now: datetime) -> None:
        until = now - self.lag
        if until <= self.watermark:
            return
        limit = ROWS_PER_ROUND
        with transaction(self.resources.factory) as session:
            chunks = monitoring.chunks_finished_between(
                session, after=self.watermark, until=until, limit=limit
            )
            jobs = monitoring.jobs_finished_between(
                session, after=self.watermark, until=until, limit=limit
            )
        # A round that met the limit takes up where it stopped next time.
        ends = [until]
        if len(chunks) == limit:
            ends.append(chunks[-1][1])
        if len(jobs) == limit:
            ends.append(jobs[-1][2])
        until = min(ends)
        for created, rendered in chunks:
            if rendered <= until:
                self.metrics.chunk_latency.observe(max(0.0, (rendered - created).total_seconds()))
        for status, created, finished in jobs:
            if finished <= until:
                seconds = max(0.0, (finished - created).total_seconds())
                self.metrics.turnaround.labels(status).observe(seconds)
        self.watermark = until


def _ok(probe: Callable[[], Any]) -> bool:
    probe()
    return True


def start_exporter(settings: Settings, *, port: int, address: str) -> Exporter:
    """Check the dependencies (one line naming the first that does not answer), then serve
    the metrics on `address:port`."""
    exporter = Exporter(settings)
    exporter.check()
    start_http_server(port, addr=address, registry=exporter.metrics.registry)
    return exporter


def run_rounds(exporter: Exporter, *, interval: float) -> None:
    """Read a round every `interval` seconds until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while True:
        exporter.poll()
        if stop.wait(interval):
            return
