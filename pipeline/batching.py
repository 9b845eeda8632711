"""The dynamic batcher: many producers submit single requests, one loop runs them in batches.

Producers (a render worker's task threads, the embedded renderer) call
`DynamicBatcher.submit(request)` and wait on the returned future. One loop thread forms
batches of at most `max_batch` requests, waits at most `max_wait_ms` for the oldest request
to get company, keeps a batch's padded cost (requests x longest expected tokens) under
`token_budget`, and groups requests of similar expected length (a power-of-two bucket of
`engine.expected_tokens`, else of the text length) so a short chunk does not ride in a
batch that runs as long as its longest member. A batch that leaves before it is full (its
oldest request's wait is over) takes the nearest-length requests waiting elsewhere: a
half-empty batch costs as many steps as a full one.

With a StagedEngine the second stage of batch k (Maya1: SNAC decoding) runs on its own
thread while the loop already runs the first stage of batch k+1 (Maya1: LLM generation).

Failures stay with their request: a stage may return an exception for one element; a
batch that raises EngineOutOfMemory is split in halves and tried again; any other error of
a whole batch is retried one request at a time to find the one that fails.

`BatchingEngine` wraps a batcher as an ordinary Engine, so the renderer needs no change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

from pipeline.config import Settings
from pipeline.engines.base import Engine, StagedEngine, SynthesisRequest, SynthesisResult
from pipeline.errors import EngineOutOfMemory, RetryableError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
Outcome = SynthesisResult | BaseException


class BatcherClosed(RetryableError):
    """The batcher is shut down (the worker is stopping); the request was not rendered."""


@dataclass
class _Pending:
    request: SynthesisRequest
    future: Future[SynthesisResult]
    tokens: int
    arrived: float


@dataclass
class BatcherStats:
    """What the batcher did; read by tests, benchmarks and metrics."""

    batches: int = 0
    requests: int = 0
    oom_splits: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    stage_one_seconds: float = 0.0
    stage_two_seconds: float = 0.0


def length_bucket(tokens: int) -> int:
    """Requests in one bucket differ in expected length by less than 2x."""
    return max(int(tokens), 1).bit_length()


def isolate(
    run: Callable[[list[T]], Sequence[R]], items: list[T]
) -> tuple[list[R | BaseException], int]:
    """run(items) with failures kept to the items that cause them: an EngineOutOfMemory
    splits the batch in halves (down to one item, whose error it becomes), any other
    error retries item by item. Returns the outcomes in order and the number of splits."""
    try:
        results: list[R | BaseException] = list(run(items))
        if len(results) != len(items):
            raise RuntimeError(f"the engine returned {len(results)} results for {len(items)}")
        return results, 0
    except KeyboardInterrupt:
        raise
    except EngineOutOfMemory as exc:
        if len(items) == 1:
            return [exc], 0
        half = len(items) // 2
        log.warning("batch of %d ran out of memory (%s); splitting it", len(items), exc)
        first, first_splits = isolate(run, items[:half])
        second, second_splits = isolate(run, items[half:])
        return first + second, 1 + first_splits + second_splits
    except Exception as exc:
        if len(items) == 1:
            return [exc], 0
        log.info("batch of %d failed (%s); retrying one by one", len(items), exc)
        outcomes: list[R | BaseException] = []
        splits = 0
        for item in items:
            outcome, more = isolate(run, [item])
            outcomes += outcome
            splits += more
        return outcomes, splits


class DynamicBatcher:
    """Batches requests submitted from many threads into few engine calls (see module doc)."""

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
        # stage two runs here, one batch at a time; at most one more batch waits for it
        self._decode_slots = threading.Semaphore(2)
        self._decode_thread_work: list[Callable[[], None]] = []
        self._decode_cond = threading.Condition()
        self._decoder = threading.Thread(
            target=self._decode_loop, name="batcher-stage2", daemon=True
        )
        self._loop = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._decoder.start()
        self._loop.start()

    # --- producers -------------------------------------------------------------------

    def submit(self, request: SynthesisRequest) -> Future[SynthesisResult]:
        """Queue one request; the future holds its result or its own failure."""
        future: Future[SynthesisResult] = Future()
        tokens = self._expected_tokens(request)
        with self._cond:
            if self._closed:
                raise BatcherClosed()
            self._pending.append(_Pending(request, future, tokens, time.monotonic()))
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
            self._decode_thread_work.append(_STOP)
            self._decode_cond.notify_all()
        self._decoder.join(timeout)

    def _expected_tokens(self, request: SynthesisRequest) -> int:
        if self._staged:
            return int(self.engine.expected_tokens(request))  # type: ignore[union-attr]
        return len(request.text)

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
                if not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                batch, wait = self._ready_batch(time.monotonic())
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
            finally:
                self._decode_slots.release()

        with self._decode_cond:
            self._decode_thread_work.append(decode)
            self._decode_cond.notify_all()

    def _decode_loop(self) -> None:
        while True:
            with self._decode_cond:
                while not self._decode_thread_work:
                    self._decode_cond.wait()
                work = self._decode_thread_work.pop(0)
            if work is _STOP:
                return
            work()


def _stop() -> None:
    """Marks the end of stage two's work list."""


_STOP: Callable[[], None] = _stop


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


class BatchingEngine:
    """An Engine whose render_batch goes through a DynamicBatcher: concurrent callers'
    requests are merged into the inner engine's batches."""

    def __init__(self, inner: Engine, batcher: DynamicBatcher) -> None:
        self.inner = inner
        self.batcher = batcher
        self.name = inner.name
        self.model_version = inner.model_version
        self.sample_rate = inner.sample_rate
        self.max_chunk_chars = inner.max_chunk_chars
        self.default_voice = inner.default_voice
        self.takes_phonemes = bool(getattr(inner, "takes_phonemes", False))

    def render_outcomes(self, requests: Sequence[SynthesisRequest]) -> list[Outcome]:
        """Each request's result or its own failure, in order."""
        futures = [self.batcher.submit(request) for request in requests]
        outcomes: list[Outcome] = []
        for future in futures:
            exc = future.exception()
            outcomes.append(exc if exc is not None else future.result())
        return outcomes

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        """Render every request, in order. Raises the first request's failure, if any."""
        results = []
        for outcome in self.render_outcomes(requests):
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
        return results

    def close(self) -> None:
        self.batcher.close()


def batching_wanted(engine: Engine, settings: Settings) -> bool:
    """Whether `settings.dynamic_batching` (auto: for two-stage engines such as maya1) asks
    for the batcher in front of this engine."""
    mode = settings.dynamic_batching
    return mode == "on" or (mode == "auto" and isinstance(engine, StagedEngine))


def with_batching(engine: Engine, settings: Settings) -> Engine:
    """The engine behind a DynamicBatcher configured from settings, when batching is wanted."""
    if isinstance(engine, BatchingEngine) or not batching_wanted(engine, settings):
        return engine
    batcher = DynamicBatcher(
        engine,
        max_batch=settings.batch_size,
        max_wait_ms=settings.batch_wait_ms,
        token_budget=settings.batch_token_budget,
    )
    return BatchingEngine(engine, batcher)
