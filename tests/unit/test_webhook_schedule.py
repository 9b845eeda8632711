"""The webhook retry schedule: doubling waits, capped, given up on after the budget."""

from __future__ import annotations

from datetime import timedelta

from pipeline.config import load_settings
from pipeline.webhooks.schedule import retry_delay, settings_delay


def _schedule(first: float, cap: float, budget: timedelta) -> list[float]:
    waits: list[float] = []
    elapsed = timedelta(0)
    number = 1
    while delay := retry_delay(number, first=first, cap=cap, since_first=elapsed, budget=budget):
        waits.append(delay.total_seconds())
        elapsed += delay
        number += 1
    return waits


def test_waits_double_from_the_first_up_to_the_cap() -> None:
    waits = _schedule(5, 60, timedelta(minutes=10))
    assert waits[:5] == [5, 10, 20, 40, 60]
    assert set(waits[4:]) == {60}


def test_the_default_schedule_retries_for_up_to_24_hours_then_gives_up() -> None:
    settings = load_settings()
    elapsed = timedelta(0)
    number = 1
    waits = []
    while (delay := settings_delay(number, settings, since_first=elapsed)) is not None:
        waits.append(delay)
        elapsed += delay
        number += 1
    assert waits[0] == timedelta(seconds=5)
    assert max(waits) == timedelta(hours=4)  # VOICEBATCH_WEBHOOK_MAX_RETRY_SECONDS
    assert timedelta(hours=20) < elapsed <= timedelta(hours=24)
    # one more wait of the cap would pass the 24 hours
    assert elapsed + timedelta(hours=4) > timedelta(hours=24)
    assert 10 <= len(waits) <= 20


def test_a_delivery_older_than_the_budget_is_not_retried() -> None:
    assert (
        retry_delay(1, first=5, cap=60, since_first=timedelta(hours=24), budget=timedelta(hours=24))
        is None
    )
