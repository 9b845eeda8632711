"""How the renderer treats an engine that fails: out of memory, bad input, one bad request."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.errors import EngineOutOfMemory, InputError
from pipeline.runner import LocalRuntime
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, JobStatus
from tests.support.rendering import CountingEngine, long_book, run


class SmallMemory(CountingEngine):
    """Runs out of memory on batches longer than `fits` requests, and on one word always."""

    def __init__(self, fits: int, never_fits: str | None = None) -> None:
        super().__init__()
        self.fits, self.never_fits = fits, never_fits
        self.sizes: list[int] = []

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        self.sizes.append(len(requests))
        if len(requests) > self.fits:
            raise EngineOutOfMemory(f"CUDA out of memory at batch {len(requests)}")
        if self.never_fits and any(self.never_fits in r.text for r in requests):
            raise EngineOutOfMemory("CUDA out of memory: this one request is too long")
        return super().render_batch(requests)


def test_a_batch_that_does_not_fit_is_halved_until_it_does(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    runtime.settings.batch_size = 8
    engine = SmallMemory(fits=2)
    outcome = run(runtime, engine, long_book(tmp_path, chapters=1, paragraphs=8), tmp_path / "out")
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    # 9 chunks (heading + 8 paragraphs) leased 8 then 1: 8 -> 4+4 -> 2+2+2+2, then 1
    assert engine.sizes[:7] == [8, 4, 2, 2, 4, 2, 2]
    assert sorted(engine.requests) == sorted(set(engine.requests)) and len(engine.requests) == 9
    assert outcome.stats.oom_splits == 3 and outcome.stats.failed == 0


def test_a_single_request_that_never_fits_fails_after_its_attempts_and_alone(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    runtime.settings.batch_size = 4
    runtime.settings.max_attempts = 2
    engine = SmallMemory(fits=4, never_fits="Paragraph three of chapter zero")
    outcome = run(runtime, engine, long_book(tmp_path, chapters=2, paragraphs=6), tmp_path / "out")
    assert outcome.assembly is not None
    assert outcome.assembly.status == JobStatus.PARTIALLY_FAILED
    (failed,) = outcome.assembly.failed_chunks
    assert (
        failed["text"].startswith("Paragraph three of chapter zero")
        and "out of memory" in failed["error"]
    )
    with transaction(runtime.factory) as session:
        chunk = store.failed_chunks(session, job_id=outcome.job.job_id)[0]
    assert chunk.attempts == 2  # retried (a retryable failure), then given up on
    assert outcome.stats.failed == 1


class RefusesWord(CountingEngine):
    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        if any("Tiny." in r.text for r in requests):
            raise InputError("the voice cannot say 'Tiny.'")
        return super().render_batch(requests)


def test_an_input_error_from_the_engine_fails_that_chunk_at_once_and_never_retries_it(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    runtime.settings.max_attempts = 3
    outcome = run(runtime, RefusesWord(), book, tmp_path / "out")
    assert outcome.assembly is not None
    assert outcome.assembly.status == JobStatus.PARTIALLY_FAILED
    with transaction(runtime.factory) as session:
        (chunk,) = store.failed_chunks(session, job_id=outcome.job.job_id)
        states = {
            c.status
            for item in store.job_items(session, job_id=outcome.job.job_id)
            for c in store.item_chunks(session, item_id=item.id)
        }
    assert chunk.attempts == 1 and "cannot say" in (chunk.error or "")
    assert states == {ChunkStatus.DONE, ChunkStatus.FAILED}
