"""When a webhook is tried again: exponential backoff, capped, for a bounded time.

Deterministic (no jitter): deliveries are not a herd that one outage sends back at once
in step, they are spread by when their jobs finished; and a receiver's operator can read
the schedule off the attempts.
"""

from __future__ import annotations

from datetime import timedelta

from pipeline.config import Settings


def retry_delay(
    number: int, *, first: float, cap: float, since_first: timedelta, budget: timedelta
) -> timedelta | None:
    """The wait after failed attempt `number` (1 for the first), `first` seconds doubling
    each time up to `cap`; None when the next attempt would come more than `budget`
    after the first one (`since_first` ago): the delivery is given up on."""
    delay = timedelta(seconds=min(cap, first * 2 ** max(0, number - 1)))
    if since_first + delay > budget:
        return None
    return delay


def settings_delay(number: int, settings: Settings, *, since_first: timedelta) -> timedelta | None:
    """`retry_delay` with the schedule VOICEBATCH_WEBHOOK_* settings configure."""
    return retry_delay(
        number,
        first=settings.webhook_first_retry_seconds,
        cap=settings.webhook_max_retry_seconds,
        since_first=since_first,
        budget=timedelta(hours=settings.webhook_retry_hours),
    )
