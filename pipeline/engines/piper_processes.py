"""Piper's batch rendering in processes of its own, stopped while speech renders.

A render worker that also answers speech keeps a Piper engine in its own process for
speech, at normal priority, and renders batch chunks in `processes` child processes
lowered to a nice value (engines.priority). While a speech sentence renders, the
children are stopped outright (SIGSTOP, then SIGCONT): a nice value only weighs the
scheduler's choice, and a sentence beside running batch renders still took twice its
time, its own CPU time rising with theirs in the shared caches (docs/benchmarks.md).
Stopped, a batch render loses nothing but the time; it goes on where it was. So that
batch work never starves, the children are stopped for at most `PAUSE_SHARE` of any
`PAUSE_WINDOW` seconds; past that, speech renders beside them at its higher priority.

Processes rather than lowered threads, because threads share the interpreter's lock: a
lowered batch thread holding it while the kernel runs something else stalls every
speech thread that needs it next. Each child renders one request at a time on a
one-thread session (engines.piper).

Children are started with `spawn` (onnxruntime and espeak hold threads and state that
`fork` would copy half-made) and load their voice before the first chunk. A child that
dies (killed, out of memory) fails the requests it held with a RetryableError, and the
next batch starts a fresh set. A child whose parent dies goes with it, stopped or not
(its parent's sentinel, and a parent-death signal on Linux).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from multiprocessing.connection import wait

from pipeline.engines.base import Engine, EngineStandIn, SynthesisRequest, SynthesisResult
from pipeline.engines.priority import lower_process
from pipeline.errors import RetryableError

log = logging.getLogger(__name__)

# Batch renders are stopped for speech at most this share of any window of this many
# seconds: under a flood of speech, batch work still gets the rest.
PAUSE_SHARE = 0.5
PAUSE_WINDOW = 10.0
_PR_SET_PDEATHSIG = 1

# The engine of a child process (set by _start_child, in the child only).
_CHILD_ENGINE: Engine | None = None
# How a child makes its engine: the class of the engine split (engines.piper.PiperEngine),
# called with the voice and call_threads=1. Passed in, so this module imports no engine.
EngineMaker = Callable[..., Engine]


def _start_child(make: EngineMaker, voice: str, niceness: int) -> None:
    global _CHILD_ENGINE
    lower_process(niceness)  # first: every thread started after takes its nice value
    # A stopped child cannot watch anything: the kernel kills it when the thread that
    # started it ends (the worker's main thread, or a task thread that replaced a set).
    with suppress(OSError, AttributeError):  # not Linux: the sentinel below still works
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # The task pipe's writing end is in this process too, so a parent that dies leaves
    # the child waiting for ever: it watches its parent's sentinel and goes with it.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()
    _CHILD_ENGINE = make(voice=voice, call_threads=1)


def _exit_with(sentinel: int) -> None:
    wait([sentinel])
    os._exit(0)


def _child_render(request: SynthesisRequest) -> SynthesisResult:
    if _CHILD_ENGINE is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("piper render process started without its voice")
    return _CHILD_ENGINE.render_batch([request])[0]


def _child_ready() -> int:
    return os.getpid()


class PiperProcesses(EngineStandIn):
    """A Piper engine's batch side: requests rendered in `processes` child processes at
    nice `niceness`, one request per child at a time, each child's engine made by `make`
    (base.Engine)."""

    def __init__(self, engine: Engine, *, make: EngineMaker, niceness: int, processes: int) -> None:
        super().__init__(engine)
        self.make = make
        self.niceness = niceness
        self.processes = processes
        self._lock = threading.Lock()
        self._pool = self._start()
        # speech renders holding the children stopped, since when, and past stops
        self._holders = 0
        self._stopped_at = 0.0
        self._stops: deque[tuple[float, float]] = deque()
        self._hold_lock = threading.Lock()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(self.make, self.default_voice, self.niceness),
        )
        # Every child started and its voice loaded now: the first chunk should not wait
        # for it, and a voice that cannot load fails the worker's start, not a chunk.
        ready = [pool.submit(_child_ready) for _ in range(self.processes)]
        try:
            for future in ready:
                future.result()
        except BrokenProcessPool as exc:
            pool.shutdown(wait=False, cancel_futures=True)
            raise RetryableError(
                f"piper render processes could not start voice {self.default_voice}: {exc}"
            ) from exc
        return pool

    def pids(self) -> list[int]:
        """The child processes' ids (for tests and the worker's banner)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(processes)

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        with self._lock:
            pool = self._pool
        try:
            futures: list[Future[SynthesisResult]] = [
                pool.submit(_child_render, request) for request in requests
            ]
            return [future.result() for future in futures]
        except BrokenProcessPool as exc:
            self._replace(pool)
            raise RetryableError(
                f"a piper render process died while rendering ({exc}); started afresh"
            ) from exc

    @contextmanager
    def stopped(self) -> Iterator[bool]:
        """The children stopped for the block (True), or left running (False) when they
        have been stopped for PAUSE_SHARE of the last PAUSE_WINDOW seconds already.
        Blocks may overlap: the children run again when the last one ends."""
        held = self._hold()
        try:
            yield held
        finally:
            if held:
                self._release()

    def stopped_share(self) -> float:
        """The share of the last PAUSE_WINDOW seconds the children spent stopped."""
        with self._hold_lock:
            return self._share(time.monotonic())

    def _share(self, now: float) -> float:
        horizon = now - PAUSE_WINDOW
        while self._stops and self._stops[0][1] < horizon:
            self._stops.popleft()
        spent = sum(end - max(start, horizon) for start, end in self._stops)
        if self._holders:
            spent += now - max(self._stopped_at, horizon)
        return spent / PAUSE_WINDOW

    def _hold(self) -> bool:
        with self._hold_lock:
            now = time.monotonic()
            if self._holders == 0:
                if self._share(now) >= PAUSE_SHARE:
                    return False
                self._signal(signal.SIGSTOP)
                self._stopped_at = now
            self._holders += 1
            return True

    def _release(self) -> None:
        with self._hold_lock:
            self._holders -= 1
            if self._holders == 0:
                self._signal(signal.SIGCONT)
                self._stops.append((self._stopped_at, time.monotonic()))

    def _signal(self, signum: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # died meanwhile: the pool notices and says so
                continue

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A fresh set of children in place of `broken` (once, however many callers saw
        it break)."""
        with self._lock:
            if self._pool is not broken:
                return
            # a stopped child would hold a termination pending for ever
            self._signal(signal.SIGCONT)
            broken.shutdown(wait=False, cancel_futures=True)
            log.warning("a piper render process died: starting %d afresh", self.processes)
            self._pool = self._start()

    def close(self) -> None:
        """End the children (they also exit when this process does)."""
        with self._lock:
            self._signal(signal.SIGCONT)
            self._pool.shutdown(wait=True, cancel_futures=True)


class SpeechFirstPiper(EngineStandIn):
    """A worker's speech side of a Piper voice: each call renders in this process with
    the batch side's children stopped (PiperProcesses.stopped) (base.Engine)."""

    def __init__(self, engine: Engine, batch: PiperProcesses) -> None:
        super().__init__(engine)
        self.engine = engine
        self.batch = batch

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        with self.batch.stopped():
            return self.engine.render_batch(requests)
