"""DynamicBatcher: requests from many threads merged into few engine batches (see the
package doc)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from pipeline.batching.isolate import isolate
from pipeline.engines.base import Engine, StagedEngine, SynthesisRequest, SynthesisResult
from pipeline.errors import EngineBroken, RetryableError

log = logging.getLogger(__name__)


class BatcherClosed(RetryableError):
    """The batcher is shut down (the worker is stopping); the request was not rendered."""


class BatcherDead(EngineBroken):
    """A batcher thread died: nothing renders in this process any more."""


class TimedFuture(Future[SynthesisResult]):
    """A request's future, with how long it waited in the queue before its engine call
    started (set when the call starts; speech reports it per request)."""

    queued_seconds: float = 0.0


@dataclass
class _Pending:
    request: SynthesisRequest
    future: Future[SynthesisResult]
    tokens: int
    arrived: float
    realtime: bool = False  # a speech request: batched before any batch work waiting


@dataclass
class BatcherStats:
    """What the batcher did; read by tests, benchmarks and metrics."""

    batches: int = 0
    requests: int = 0
    oom_splits: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    stage_one_seconds: float = 0.0
    stage_two_seconds: float = 0.0


@dataclass
class _Decode:
    """Stage two of one batch, queued for the decode thread: run it, or fail its
    requests when the thread is gone."""

    run: Callable[[], None]
    items: list[_Pending]


# Realtime batches in a row while batch work waits: then one batch batch, so a steady
# stream of speech requests slows batch jobs down but never starves them.
REALTIME_RUN = 4


def length_bucket(tokens: int) -> int:
    """Requests in one bucket differ in expected length by less than 2x."""
    return max(int(tokens), 1).bit_length()


class DynamicBatcher:
    """Batches requests submitted from many threads into few engine calls (see the package doc)."""

    def __init__(
        self,
        engine: StagedEngine | Engine,
        *,
        max_batch: int,
        max_wait_ms: float,
        token_budget: int = 0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.token_budget = token_budget
        self.stats = BatcherStats()
        self._staged = isinstance(engine, StagedEngine)
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self.dead: BatcherDead | None = None  # set when a batcher thread died
        self._realtime_run = 0  # realtime batches since the last batch batch
        # Called with each realtime request's lane wait (queued -> its engine call starts),
        # in seconds, on the batcher's thread: the speech worker's metrics set it.
        self.on_lane_wait: Callable[[float], None] | None = None
        # stage two runs here, one batch at a time; at most one more batch waits for it
        self._decode_slots = threading.Semaphore(2)
        self._decode_work: list[_Decode | None] = []  # None: stop
        self._decode_cond = threading.Condition()
        self._decoder = threading.Thread(
            target=self._guarded(self._decode_loop), name="batcher-stage2", daemon=True
        )
        self._loop = threading.Thread(target=self._guarded(self._run), name="batcher", daemon=True)
        self._decoder.start()
        self._loop.start()

    # --- producers -------------------------------------------------------------------

    def submit(
        self, request: SynthesisRequest, *, realtime: bool = False
    ) -> Future[SynthesisResult]:
        """Queue one request; the future holds its result or its own failure. Raises
        BatcherDead at once when a batcher thread has died, BatcherClosed once closed.

        `realtime` requests (speech a client is waiting for) form the next batch, with no
        wait for company, ahead of every batch request already waiting."""
        future = TimedFuture()
        tokens = self._expected_tokens(request)
        with self._cond:
            if self.dead is not None:
                raise self.dead
            if self._closed:
                raise BatcherClosed()
            self._pending.append(_Pending(request, future, tokens, time.monotonic(), realtime))
            self._cond.notify_all()
        return future

    def close(self, *, cancel_pending: bool = False, timeout: float | None = None) -> None:
        """Stop taking requests. Pending ones are rendered (or failed with BatcherClosed
        when cancel_pending), then the threads end."""
        with self._cond:
            self._closed = True
            if cancel_pending:
                for item in self._pending:
                    item.future.set_exception(BatcherClosed())
                self._pending.clear()
            self._cond.notify_all()
        self._loop.join(timeout)
        with self._decode_cond:
            self._decode_work.append(None)
            self._decode_cond.notify_all()
        self._decoder.join(timeout)

    def _expected_tokens(self, request: SynthesisRequest) -> int:
        if self._staged:
            return int(self.engine.expected_tokens(request))  # type: ignore[union-attr]
        return len(request.text)

    # --- a thread that dies ------------------------------------------------------------

    def _guarded(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # logged by _die; nothing above this thread to tell
                self._die(exc)

        return run

    def _die(self, exc: BaseException) -> None:
        """Fail every request waiting, and every later one, with BatcherDead: otherwise
        their producers would wait for ever on futures no thread will settle."""
        dead = BatcherDead(f"the batcher thread died: {type(exc).__name__}: {exc}")
        dead.__cause__ = exc
        log.critical("%s; failing every waiting request", dead)
        with self._cond:
            self.dead = dead
            waiting, self._pending = self._pending, []
            self._cond.notify_all()
        with self._decode_cond:
            queued = [work for work in self._decode_work if work is not None]
            self._decode_work.clear()
            self._decode_work.append(None)  # the other thread ends too
            self._decode_cond.notify_all()
        for item in [*waiting, *(item for work in queued for item in work.items)]:
            if not item.future.done():
                item.future.set_exception(dead)
        self._decode_slots.release()  # a loop waiting for a decode slot sees the death

    # --- forming batches ---------------------------------------------------------------

    def _cost(self, batch: Sequence[_Pending]) -> int:
        """A padded batch's cost: every row runs as long as the longest."""
        return len(batch) * max(item.tokens for item in batch)

    def _fits(self, batch: Sequence[_Pending], item: _Pending) -> bool:
        if len(batch) >= self.max_batch:
            return False
        return not self.token_budget or self._cost([*batch, item]) <= self.token_budget

    def _ready_batch(self, now: float) -> tuple[list[_Pending] | None, float | None]:
        """A batch to run now, or None and how long to wait for one (None: until notified)."""
        buckets: dict[int, list[_Pending]] = {}
        for item in self._pending:
            buckets.setdefault(length_bucket(item.tokens), []).append(item)
        ready: list[tuple[float, list[_Pending], bool]] = []
        wait: float | None = None
        for members in buckets.values():
            batch = self._fill([], members)
            full = len(batch) < len(members) or len(batch) == self.max_batch
            due = members[0].arrived + self.max_wait
            if full or due <= now or self._closed:
                ready.append((members[0].arrived, batch, full))
            else:
                wait = due - now if wait is None else min(wait, due - now)
        if not ready:
            return None, wait
        _, batch, full = min(ready, key=lambda entry: entry[0])
        if not full:  # leaving part-empty: take the nearest lengths from the other buckets
            anchor = batch[0].tokens
            others = sorted(
                (item for item in self._pending if item not in batch),
                key=lambda item: (abs(item.tokens - anchor), item.arrived),
            )
            batch = self._fill(batch, others)
        return batch, None

    def _realtime_batch(self) -> tuple[list[_Pending], None] | None:
        """The realtime lane: waiting speech requests, oldest first, as a batch now;
        after REALTIME_RUN of them in a row, the oldest batch work waiting goes once.
        None when no realtime request waits."""
        waiting = [item for item in self._pending if item.realtime]
        if not waiting:
            self._realtime_run = 0
            return None
        if self._realtime_run >= REALTIME_RUN and len(waiting) < len(self._pending):
            self._realtime_run = 0
            batch_work = [item for item in self._pending if not item.realtime]
            return self._fill([], batch_work), None
        self._realtime_run += 1
        return self._fill([], waiting), None

    def _fill(self, batch: list[_Pending], candidates: Sequence[_Pending]) -> list[_Pending]:
        batch = list(batch)
        for item in candidates:
            if not batch or self._fits(batch, item):
                batch.append(item)
            elif len(batch) >= self.max_batch:
                break
        return batch

    def _next_batch(self) -> list[_Pending] | None:
        with self._cond:
            while True:
                if self.dead is not None:
                    return None
                if not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                batch, wait = self._realtime_batch() or self._ready_batch(time.monotonic())
                if batch is not None:
                    taken = {id(item) for item in batch}
                    self._pending = [item for item in self._pending if id(item) not in taken]
                    return batch
                self._cond.wait(wait)

    # --- running batches ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.stats.batches += 1
            self.stats.requests += len(live)
            self.stats.batch_sizes.append(len(live))
            try:
                self._run_batch(live)
            except BaseException as exc:  # the loop must outlive any batch
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    def _run_batch(self, batch: list[_Pending]) -> None:
        requests = [item.request for item in batch]
        self._observe_lane_waits(batch)
        started = time.perf_counter()
        if not self._staged:
            outcomes, splits = isolate(self.engine.render_batch, requests)
            self.stats.stage_one_seconds += time.perf_counter() - started
            self.stats.oom_splits += splits
            _settle(batch, outcomes)
            return
        staged: StagedEngine = self.engine  # type: ignore[assignment]
        generated, splits = isolate(staged.generate_batch, requests)
        with self._cond:
            self.stats.stage_one_seconds += time.perf_counter() - started
            self.stats.oom_splits += splits
        failed = [(item, out) for item, out in zip(batch, generated, strict=True) if _failed(out)]
        _settle([item for item, _ in failed], [out for _, out in failed])
        todo = [(item, out) for item, out in zip(batch, generated, strict=True) if not _failed(out)]
        if not todo:
            return
        self._decode_slots.acquire()  # back-pressure: stage one runs at most one batch ahead
        if self.dead is not None:
            raise self.dead

        def decode() -> None:
            try:
                begun = time.perf_counter()
                pairs = [(item.request, out) for item, out in todo]
                outcomes, more = isolate(
                    lambda chunk: list(
                        staged.decode_batch([r for r, _ in chunk], [o for _, o in chunk])
                    ),
                    pairs,
                )
                with self._cond:  # stats are shared with the loop thread
                    self.stats.stage_two_seconds += time.perf_counter() - begun
                    self.stats.oom_splits += more
                _settle([item for item, _ in todo], outcomes)
            except BaseException as exc:
                for item, _ in todo:
                    if not item.future.done():
                        item.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                self._decode_slots.release()

        with self._decode_cond:
            self._decode_work.append(_Decode(decode, [item for item, _ in todo]))
            self._decode_cond.notify_all()

    def _observe_lane_waits(self, batch: list[_Pending]) -> None:
        now = time.monotonic()
        for item in batch:
            if isinstance(item.future, TimedFuture):
                item.future.queued_seconds = now - item.arrived
        observe = self.on_lane_wait
        if observe is None:
            return
        for item in batch:
            if item.realtime:
                try:
                    observe(now - item.arrived)
                except Exception as exc:  # a metric must never stop the engine
                    log.warning("lane wait observer failed: %s", exc)

    def _decode_loop(self) -> None:
        while True:
            with self._decode_cond:
                while not self._decode_work:
                    self._decode_cond.wait()
                work = self._decode_work.pop(0)
            if work is None:
                return
            work.run()


def _failed(outcome: object) -> bool:
    return isinstance(outcome, BaseException)


def _settle(batch: Sequence[_Pending], outcomes: Sequence[object]) -> None:
    for item, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        elif isinstance(outcome, SynthesisResult):
            item.future.set_result(outcome)
        else:
            item.future.set_exception(
                TypeError(f"the engine returned {type(outcome).__name__}, not a SynthesisResult")
            )
