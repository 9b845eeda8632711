"""Webhook metrics: real deliveries to a local receiver counted by outcome and timed, read
back by scraping a real /metrics endpoint; and the outbox's backlog the exporter reports
(undelivered, due, the age of the oldest)."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, load_settings
from pipeline.state import monitoring, store
from pipeline.state import webhooks as outbox
from pipeline.state.db import transaction
from pipeline.state.models import WebhookOutcome, utcnow
from pipeline.webhooks.delivery import METRIC_OUTCOMES, deliver
from tests.support.services import free_port
from tests.support.state import make_spec
from workers.metrics import WEBHOOK_EVENTS, WEBHOOK_OUTCOMES, serve, worker_metrics

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
ANSWERS = {"/ok": 200, "/fail": 500, "/gone": 410}


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/hang":
            time.sleep(2)  # past the read timeout
        self.send_response(ANSWERS.get(self.path, 200))
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def scrape() -> Iterator[str]:
    """This process's metrics, served the way a worker serves them."""
    worker_metrics()  # registered before the first scrape
    port = free_port()
    serve(port)
    yield f"http://127.0.0.1:{port}/metrics"


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _webhook_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {k: v for k, v in _samples(url).items() if k[0].startswith("voicebatch_webhook_")}


def _settings(**overrides: object) -> Settings:
    return load_settings(
        webhook_secret=SECRET,
        webhook_allowed_networks="127.0.0.1/32",
        webhook_connect_timeout_seconds=1,
        webhook_read_timeout_seconds=0.5,
        **overrides,
    )


def _cancelled_job(db: sessionmaker[Session], callback: str) -> uuid.UUID:
    """A job cancelled with a callback: one job.cancelled delivery, due now."""
    spec = replace(make_spec(fingerprint=uuid.uuid4().hex * 2), callback_url=callback)
    with transaction(db) as session:
        job_id = store.create_job(session, spec=spec)
        assert store.start_job(session, job_id=job_id)
        assert store.cancel_job(session, job_id=job_id)
        (delivery_id,) = outbox.pending_deliveries(session, job_id=job_id)
    return delivery_id


def _attempts(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], outcome: str) -> float:
    key = (("event", "job.cancelled"), ("outcome", outcome))
    return found.get(("voicebatch_webhook_attempts_total", key), 0.0)


def test_every_attempt_is_counted_by_event_and_outcome_and_timed(
    db: sessionmaker[Session], receiver: str, scrape: str
) -> None:
    before = _samples(scrape)
    settings = _settings()
    paths = {"delivered": "/ok", "failed": "/fail", "gone": "/gone", "timeout": "/hang"}
    for outcome, path in paths.items():
        attempted = deliver(
            db,
            delivery_id=_cancelled_job(db, f"{receiver}{path}"),
            settings=settings,
            observer=worker_metrics(),
        )
        assert attempted is not None and attempted.result == outcome
    # the SSRF guard's refusal, and a failure on the schedule's last try (given up)
    refused = _cancelled_job(db, "http://10.0.0.1/hook")
    assert deliver(db, delivery_id=refused, settings=settings, observer=worker_metrics())
    last_try = _settings(webhook_retry_hours=0.5, webhook_first_retry_seconds=3600)
    exhausted = _cancelled_job(db, f"{receiver}/fail")
    attempted = deliver(db, delivery_id=exhausted, settings=last_try, observer=worker_metrics())
    assert attempted is not None and attempted.outcome == WebhookOutcome.EXHAUSTED

    after = _samples(scrape)
    for outcome in ("delivered", "failed", "gone", "timeout", "refused", "exhausted"):
        assert _attempts(after, outcome) - _attempts(before, outcome) == 1, outcome
    count = ("voicebatch_webhook_delivery_seconds_count", ())
    assert after[count] - before.get(count, 0.0) == 6
    # the timeout took at least the read timeout: it is in no bucket below 0.5 s
    fast = ("voicebatch_webhook_delivery_seconds_bucket", (("le", "0.25"),))
    assert after[fast] - before.get(fast, 0.0) <= 5
    total = ("voicebatch_webhook_delivery_seconds_sum", ())
    assert after[total] - before.get(total, 0.0) >= 0.5


def test_every_event_and_outcome_series_exists_at_zero_before_any_attempt(scrape: str) -> None:
    """A ratio or rate() over a series that appears at its first attempt misses it."""
    found = _samples(scrape)
    for event in WEBHOOK_EVENTS:
        for outcome in WEBHOOK_OUTCOMES:
            key = (("event", event), ("outcome", outcome))
            assert ("voicebatch_webhook_attempts_total", key) in found
    assert set(WEBHOOK_EVENTS) == set(outbox.EVENTS.values())
    assert WEBHOOK_OUTCOMES == METRIC_OUTCOMES


def test_a_delivery_not_due_is_not_attempted_nor_counted(
    db: sessionmaker[Session], receiver: str, scrape: str
) -> None:
    delivery_id = _cancelled_job(db, f"{receiver}/fail")
    assert deliver(db, delivery_id=delivery_id, settings=_settings(), observer=worker_metrics())
    before = _webhook_samples(scrape)
    # retried later: not due now
    again = deliver(db, delivery_id=delivery_id, settings=_settings(), observer=worker_metrics())
    assert again is None
    assert _webhook_samples(scrape) == before


def test_the_backlog_counts_undelivered_and_due_deliveries_and_the_oldest_age(
    db: sessionmaker[Session], receiver: str
) -> None:
    with transaction(db) as session:
        empty = monitoring.webhook_backlog(session)
    assert (empty.pending, empty.due, empty.oldest_pending_seconds) == (0, 0, 0.0)
    assert empty.oldest_due_seconds == 0.0
    settings = _settings()
    waiting = _cancelled_job(db, f"{receiver}/fail")
    _cancelled_job(db, f"{receiver}/ok")
    delivered = _cancelled_job(db, f"{receiver}/ok")
    assert deliver(db, delivery_id=waiting, settings=settings)  # retried in 5 s: not due
    assert deliver(db, delivery_id=delivered, settings=settings)  # final: not counted
    with transaction(db) as session:
        now = monitoring.webhook_backlog(session)
        later = monitoring.webhook_backlog(session, now=utcnow() + timedelta(minutes=10))
    assert (now.pending, now.due) == (2, 1)
    assert 0 <= now.oldest_pending_seconds < 60
    assert (later.pending, later.due) == (2, 2)
    assert 600 <= later.oldest_pending_seconds < 660
    # the one never attempted has been due since it was written; the retried one since
    # its retry time, 5 s after its attempt
    assert 600 <= later.oldest_due_seconds < 660
    assert now.oldest_due_seconds < 60


class _Dispatcher:
    def __init__(self) -> None:
        self.sent: list[tuple[list[uuid.UUID], float | None]] = []

    def webhooks(
        self, delivery_ids: Sequence[uuid.UUID], *, countdown: float | None = None
    ) -> None:
        self.sent.append((list(delivery_ids), countdown))


def test_the_webhooks_task_counts_its_attempt_in_the_worker_metrics(
    db: sessionmaker[Session], receiver: str, scrape: str, tmp_path: Path
) -> None:
    from pipeline.storage.local import LocalObjectStore
    from workers.context import WorkerContext, WorkerResources
    from workers.tasks import deliver_webhook

    resources = WorkerResources(
        settings=_settings(), factory=db, chunk_store=LocalObjectStore(tmp_path), index=None
    )
    dispatcher = _Dispatcher()
    # only webhooks are published here
    ctx = WorkerContext(resources, dispatcher, worker_metrics(), threading.Event(), set())  # type: ignore[arg-type]
    before = _webhook_samples(scrape)
    deliver_webhook(ctx, str(_cancelled_job(db, f"{receiver}/fail")))
    after = _webhook_samples(scrape)
    assert _attempts(after, "failed") - _attempts(before, "failed") == 1
    assert len(dispatcher.sent) == 1  # queued again for its retry
