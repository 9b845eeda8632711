"""Delivering one webhook: take it from the outbox, send one signed attempt, record it.

Called by the `webhooks` queue's task with a delivery id, by the reconciler's sweep for
ones that are due and were never (or no longer) queued, and directly by tests. Any
number of copies may run: only the one that takes the delivery's lease sends. An
`AttemptObserver` (the worker's metrics) hears of every attempt once it is recorded.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.state import webhooks as outbox
from pipeline.state.db import transaction
from pipeline.state.models import WebhookOutcome, utcnow
from pipeline.webhooks.addresses import AddressPolicy
from pipeline.webhooks.schedule import settings_delay
from pipeline.webhooks.sender import MAX_REDIRECTS, Sent, Timeouts, send
from pipeline.webhooks.signing import secret_keys, signed_headers

_OUTCOMES = {
    Sent.OK: WebhookOutcome.DELIVERED,
    Sent.GONE: WebhookOutcome.GONE,
    Sent.REFUSED: WebhookOutcome.REFUSED,
}


@dataclass(frozen=True)
class Attempted:
    """What one call did: the attempt's outcome, and when to try again (retries only);
    `event`, `result` (the outcome as the metrics name it: `metric_outcome`) and `seconds`
    (the attempt's duration) are what an AttemptObserver is told."""

    outcome: WebhookOutcome
    number: int
    status_code: int | None
    retry_in: timedelta | None = None
    event: str = ""
    result: str = ""
    seconds: float = 0.0


class AttemptObserver(Protocol):
    """Counts attempts (workers.metrics.WorkerMetrics): labels stay bounded, an event name
    and an outcome, never a job or a URL."""

    def webhook_attempt(self, *, event: str, outcome: str, seconds: float) -> None: ...


# Every `outcome` label an attempt can carry (the metrics make each at 0).
METRIC_OUTCOMES = ("delivered", "failed", "timeout", "gone", "refused", "exhausted")


def metric_outcome(outcome: WebhookOutcome, sent: Sent) -> str:
    """An attempt's outcome as the metrics name it: delivered, gone, refused, exhausted
    (the last try the schedule allowed failed: given up), or for an attempt to be retried
    how it failed (timeout: no connection or answer in time; failed: anything else)."""
    if outcome == WebhookOutcome.RETRY:
        return str(Sent.TIMEOUT if sent == Sent.TIMEOUT else Sent.FAILED)
    return str(outcome)


# A message that arrives this close before its delivery is due (its countdown ran on
# another clock) is published again for the rest of the wait; one further off is a
# duplicate of a message that is still coming, and is dropped.
EARLY_ARRIVAL = timedelta(seconds=60)


def early_by(factory: sessionmaker[Session], *, delivery_id: uuid.UUID) -> timedelta | None:
    """How early a message for `delivery_id` came, if it is due within EARLY_ARRIVAL."""
    with transaction(factory) as session:
        wait = outbox.due_in(session, delivery_id=delivery_id)
    return wait if wait is not None and wait <= EARLY_ARRIVAL else None


def attempt_lease(settings: Settings) -> timedelta:
    """How long a sender holds a delivery: every hop's connect and read, and a margin."""
    per_hop = settings.webhook_connect_timeout_seconds + settings.webhook_read_timeout_seconds
    return timedelta(seconds=per_hop * (MAX_REDIRECTS + 1) + 30)


def deliver(
    factory: sessionmaker[Session],
    *,
    delivery_id: uuid.UUID,
    settings: Settings,
    observer: AttemptObserver | None = None,
) -> Attempted | None:
    """Make one attempt at a delivery if it is due and nobody else holds it (None: not
    due, final, or taken). The attempt is recorded whatever it ends with, then told to
    `observer`."""
    if settings.webhook_secret is None:
        raise InputError(
            "VOICEBATCH_WEBHOOK_SECRET is not set: webhooks cannot be signed "
            "(set it to whsec_ + base64 of 24 to 64 random bytes)"
        )
    keys = secret_keys(settings.webhook_secret.get_secret_value())
    with transaction(factory) as session:
        taken = outbox.take_delivery(
            session, delivery_id=delivery_id, lease=attempt_lease(settings)
        )
    if taken is None:
        return None
    started = utcnow()
    clock = time.monotonic()
    body = taken.body.encode()
    result = send(
        taken.url,
        body=body,
        # The same webhook-id on every attempt; the timestamp is this attempt's.
        headers=signed_headers(
            keys, webhook_id=taken.webhook_id, timestamp=int(started.timestamp()), body=body
        ),
        timeouts=Timeouts(
            settings.webhook_connect_timeout_seconds, settings.webhook_read_timeout_seconds
        ),
        policy=AddressPolicy.of(settings),
    )
    seconds = time.monotonic() - clock
    retry_in = None
    outcome = _OUTCOMES.get(result.sent, WebhookOutcome.RETRY)
    if outcome == WebhookOutcome.RETRY:
        retry_in = settings_delay(taken.number, settings, since_first=utcnow() - taken.created_at)
        if retry_in is None:
            outcome = WebhookOutcome.EXHAUSTED
    with transaction(factory) as session:
        outbox.record_attempt(
            session,
            taken=taken,
            outcome=outcome,
            started_at=started,
            duration_ms=int(seconds * 1000),
            status_code=result.status_code,
            error=result.error,
            retry_in=retry_in,
        )
    attempted = Attempted(
        outcome,
        taken.number,
        result.status_code,
        retry_in,
        event=taken.event,
        result=metric_outcome(outcome, result.sent),
        seconds=seconds,
    )
    if observer is not None:
        observer.webhook_attempt(
            event=attempted.event, outcome=attempted.result, seconds=attempted.seconds
        )
    return attempted
