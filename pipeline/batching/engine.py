"""BatchingEngine: a DynamicBatcher as an ordinary Engine, and when to put one in front."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from pipeline.batching.batcher import DynamicBatcher
from pipeline.engines.base import (
    Engine,
    EngineStandIn,
    StagedEngine,
    SynthesisRequest,
    SynthesisResult,
)

if TYPE_CHECKING:  # a type only: the batcher runs where pydantic is not (bench/gpu-wheels.txt)
    from pipeline.config import Settings

Outcome = SynthesisResult | BaseException


def _outcome(future: Future[SynthesisResult]) -> Outcome:
    """A finished request's result, or its failure (waiting for it to finish)."""
    exc = future.exception()
    return exc if exc is not None else future.result()


class BatchingEngine(EngineStandIn):
    """An Engine whose render_batch goes through a DynamicBatcher: concurrent callers'
    requests are merged into the inner engine's batches."""

    def __init__(self, inner: Engine, batcher: DynamicBatcher) -> None:
        super().__init__(inner)
        self.inner = inner
        self.batcher = batcher

    def render_outcomes(
        self, requests: Sequence[SynthesisRequest], *, realtime: bool = False
    ) -> list[Outcome]:
        """Each request's result or its own failure, in order (`realtime`: in the
        batcher's realtime lane, ahead of batch work)."""
        futures = [self.batcher.submit(request, realtime=realtime) for request in requests]
        return [_outcome(future) for future in futures]

    def render_realtime(self, request: SynthesisRequest) -> tuple[Outcome, float]:
        """One request in the realtime lane: its result (or failure) and its lane wait,
        in seconds (queued to its engine call starting)."""
        future = self.batcher.submit(request, realtime=True)
        return _outcome(future), getattr(future, "queued_seconds", 0.0)

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


def batching_wanted(engine: Engine, settings: Settings, *, realtime_lane: bool = False) -> bool:
    """Whether `settings.dynamic_batching` (auto: for two-stage engines such as maya1) asks
    for the batcher in front of this engine. `realtime_lane`: the process serves speech
    requests too, so under auto every engine gets the batcher (its realtime lane is how
    speech goes ahead of batch work)."""
    mode = settings.dynamic_batching
    if mode == "auto" and realtime_lane:
        return True
    return mode == "on" or (mode == "auto" and isinstance(engine, StagedEngine))


def with_batching(engine: Engine, settings: Settings, *, realtime_lane: bool = False) -> Engine:
    """The engine behind a DynamicBatcher configured from settings, when batching is wanted.

    With `realtime_lane` under auto, a one-stage engine (Piper: no batched inference, one
    request per call) gets a batcher of one request per engine call: a speech sentence then
    waits for at most one batch chunk, not for a whole batch of them."""
    if isinstance(engine, BatchingEngine) or not batching_wanted(
        engine, settings, realtime_lane=realtime_lane
    ):
        return engine
    one_stage_lane = (
        realtime_lane
        and settings.dynamic_batching == "auto"
        and not isinstance(engine, StagedEngine)
    )
    batcher = DynamicBatcher(
        engine,
        max_batch=1 if one_stage_lane else settings.batch_size,
        max_wait_ms=0 if one_stage_lane else settings.batch_wait_ms,
        token_budget=settings.batch_token_budget,
    )
    return BatchingEngine(engine, batcher)
