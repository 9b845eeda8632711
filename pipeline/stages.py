"""Where a render's time goes: wall and CPU seconds per stage, summed over threads.

Every stage of the pipeline that costs time besides the engine wraps itself in
`stage(name)`; `voicebatch render --stage-times FILE` writes the totals as JSON, and
`bench/bench_render_process.py` reads them. A stage entered on two threads at once counts
both, so stages can add up to more than the wall time; a stage nested in another on the
same thread counts towards itself only. The clock costs about a
microsecond a use, so it is always on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field


@dataclass
class _Totals:
    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0


@dataclass
class StageClock:
    """Totals per stage name, and named instants (seconds since the epoch)."""

    totals: dict[str, _Totals] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: threading.local = field(default_factory=threading.local)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time inside the block, less the time of stages nested in it on this thread
        (each second is counted once, towards the innermost stage)."""
        stack: list[list[object]] = self.local.__dict__.setdefault("stack", [])
        now = (time.perf_counter(), time.thread_time())
        if stack:
            self._close(stack[-1], now, count=False)
        stack.append([name, *now])
        try:
            yield
        finally:
            now = (time.perf_counter(), time.thread_time())
            self._close(stack.pop(), now, count=True)
            if stack:
                stack[-1][1:] = now

    def _close(self, frame: list[object], now: tuple[float, float], *, count: bool) -> None:
        name, wall, cpu = frame
        assert isinstance(name, str) and isinstance(wall, float) and isinstance(cpu, float)
        self.add(name, now[0] - wall, now[1] - cpu, calls=int(count))

    def add(self, name: str, wall: float, cpu: float = 0.0, *, calls: int = 1) -> None:
        with self.lock:
            totals = self.totals.setdefault(name, _Totals())
            totals.wall += wall
            totals.cpu += cpu
            totals.calls += calls

    def mark(self, name: str) -> None:
        """Record when `name` happened (the first time only)."""
        with self.lock:
            self.marks.setdefault(name, time.time())

    def report(self) -> dict[str, object]:
        with self.lock:
            return {
                "stages": {
                    name: {"wall": round(t.wall, 4), "cpu": round(t.cpu, 4), "calls": t.calls}
                    for name, t in sorted(self.totals.items())
                },
                "marks": dict(self.marks),
            }

    def reset(self) -> None:
        with self.lock:
            self.totals.clear()
            self.marks.clear()


CLOCK = StageClock()


def stage(name: str) -> AbstractContextManager[None]:
    """Count the time spent inside the `with` block towards stage `name`."""
    return CLOCK.stage(name)


def mark(name: str) -> None:
    CLOCK.mark(name)
