"""Backoff with jitter: how long to wait before trying passing trouble again.

Exponential, capped, and jittered ("equal jitter": half the delay fixed, half random), so
that the workers a database restart or an S3 brown-out hit at the same moment do not all
come back at the same moment either.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before try number `attempt + 1` (attempt 1 is the first failure)."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def backoff_delays(*, budget: float, base: float = 0.5, cap: float = 8.0) -> Iterator[float]:
    """Delays for successive retries until they would add up to more than `budget` seconds."""
    spent, attempt = 0.0, 1
    while True:
        delay = backoff_delay(attempt, base=base, cap=cap)
        if spent + delay > budget:
            return
        spent += delay
        attempt += 1
        yield delay
