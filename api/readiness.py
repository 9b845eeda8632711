"""`ProbeCache`: /readyz's probe results, kept a few seconds.

/readyz needs no key, and each call touched the database, the broker, storage and
Redis: a loop of anonymous requests was a loop of work on every one of them. Results
are kept `seconds` (5 by default), and while one request probes the others wait for
its answer instead of probing too. A failed probe is kept one second only, so a
service coming back shows at once (start-up scripts poll /readyz)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

READY_CACHE_SECONDS = 5.0
FAILED_CACHE_SECONDS = 1.0


class ProbeCache:
    def __init__(
        self,
        seconds: float = READY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._value: dict[str, str] | None = None
        self._at = 0.0

    def checks(self, probe: Callable[[], dict[str, str]]) -> dict[str, str]:
        """The last results if younger than `seconds`, else `probe()`'s, kept."""
        with self._lock:
            ok = self._value is not None and all(v == "ok" for v in self._value.values())
            keep = self.seconds if ok else min(self.seconds, FAILED_CACHE_SECONDS)
            if self._value is None or self.clock() - self._at >= keep:
                self._value = probe()
                self._at = self.clock()
            return dict(self._value)
