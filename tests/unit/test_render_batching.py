"""The dynamic batcher wired into both runtimes: the embedded renderer runs two producers
into one batcher, a render worker sizes its task threads to keep batches full."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.batching import BatchingEngine, with_batching
from pipeline.config import load_settings
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.testing import TestToneEngine
from pipeline.errors import PermanentError
from pipeline.plan.jobs import plan_job
from pipeline.plan.prepare import check_inputs
from pipeline.render.producers import combined, producer_count, render_job_concurrently
from pipeline.render.renderer import ChunkRenderer, RenderStats
from pipeline.runner import LocalRuntime, render_file
from pipeline.state.models import JobStatus
from workers.worker import DEFAULT_THREADS, render_threads


def long_book(tmp_path: Path) -> Path:
    lines = ["# Batched Book\n"]
    for c in range(3):
        lines.append(f"## Chapter {c + 1}\n")
        lines += [f"Paragraph {p} of chapter {c} is read here, sentence {p}.\n" for p in range(8)]
    path = tmp_path / "batched.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class BatchNoting(TestToneEngine):
    """Test tones; records the size of every batch it is given and fails any batch that
    holds a request with the `fail_on` phrase (the batcher then isolates that request)."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        with self.lock:
            self.batches.append(len(requests))
        if self.fail_on and any(self.fail_on in r.text for r in requests):
            raise PermanentError(f"cannot say {self.fail_on!r}")
        return super().render_batch(requests)


def render(tmp_path: Path, name: str, **overrides: object) -> tuple[LocalRuntime, Path]:
    settings = load_settings(
        engine="test-tone", data_dir=tmp_path / name, output_format="wav", **overrides
    )
    runtime = LocalRuntime.open(settings)
    out = tmp_path / f"{name}-out"
    render_file(runtime, check_inputs(long_book(tmp_path), settings), output_dir=out)
    return runtime, out


def test_the_embedded_renderer_behind_the_batcher_writes_the_same_audio(tmp_path: Path) -> None:
    batched_runtime, batched = render(tmp_path, "batched", dynamic_batching="on", batch_size=4)
    _, plain = render(tmp_path, "plain", dynamic_batching="off", batch_size=4)
    engine = batched_runtime.engine
    assert isinstance(engine, BatchingEngine) and producer_count(engine) == 2
    stats = engine.batcher.stats
    # 3 chapter titles + 24 sentences, each rendered once, in batches of at most 4
    assert stats.requests == 27 and max(stats.batch_sizes) <= 4 and stats.batches >= 7
    assert (batched / "batched.wav").read_bytes() == (plain / "batched.wav").read_bytes()
    chapters = sorted(p.name for p in (batched / "chapters").iterdir())
    assert chapters == sorted(p.name for p in (plain / "chapters").iterdir())
    for name in chapters:
        assert (batched / "chapters" / name).read_bytes() == (
            plain / "chapters" / name
        ).read_bytes()


def test_one_failing_request_in_a_merged_batch_fails_only_its_chunk(tmp_path: Path) -> None:
    settings = load_settings(
        engine="test-tone",
        data_dir=tmp_path / "data",
        output_format="wav",
        dynamic_batching="on",
        batch_size=8,
        max_attempts=1,
    )
    runtime = LocalRuntime.open(settings)
    inner = BatchNoting(fail_on="of chapter one is read here, sentence three.")
    runtime.engine = with_batching(inner, settings)
    outcome = render_file(
        runtime, check_inputs(long_book(tmp_path), settings), output_dir=tmp_path / "out"
    )
    assert outcome.assembly is not None
    assert outcome.assembly.status == JobStatus.PARTIALLY_FAILED
    assert outcome.stats.failed == 1 and outcome.stats.rendered == 26
    assert max(inner.batches) > 1  # the batches really were merged, then split on failure


def test_stats_of_several_producers_add_up() -> None:
    one = RenderStats(rendered=2, cached=1, audio_seconds=1.5, errors=["a"])
    two = RenderStats(rendered=3, failed=1, audio_seconds=2.0, engine_calls=4, errors=["b"])
    total = combined([one, two])
    assert (total.rendered, total.cached, total.failed, total.engine_calls) == (5, 1, 1, 4)
    assert total.audio_seconds == pytest.approx(3.5) and total.errors == ["a", "b"]


@pytest.mark.parametrize(
    ("batch_size", "task_chunks", "threads"), [(64, 16, 8), (128, 16, 16), (8, 16, 4), (4, 1, 8)]
)
def test_a_render_worker_runs_enough_task_threads_to_fill_two_batches(
    tmp_path: Path, batch_size: int, task_chunks: int, threads: int
) -> None:
    settings = load_settings(
        engine="test-tone",
        data_dir=tmp_path,
        dynamic_batching="on",
        batch_size=batch_size,
        task_chunks=task_chunks,
    )
    engine = with_batching(TestToneEngine(), settings)
    try:
        assert render_threads(engine, settings) == threads
    finally:
        assert isinstance(engine, BatchingEngine)
        engine.close()
    assert render_threads(TestToneEngine(), settings) == DEFAULT_THREADS


def test_concurrent_renderers_stop_at_the_first_failure(tmp_path: Path) -> None:
    """Issue 16.12: when one producer fails, the call fails at once and the others stop
    after the batch they hold, instead of rendering the rest of the job first."""
    settings = load_settings(
        engine="test-tone", data_dir=tmp_path / "d", output_format="wav", batch_size=1
    )
    runtime = LocalRuntime.open(settings)
    engine = TestToneEngine(delay_seconds=0.1)
    planned = plan_job(
        runtime.factory,
        check_inputs(long_book(tmp_path), settings),
        engine=engine,
        settings=settings,
        output_uri=(tmp_path / "out").as_uri(),
    )

    class Failing(ChunkRenderer):
        def render_leases(self, *args: object, **kwargs: object) -> None:
            time.sleep(0.2)  # the other producer is well under way
            raise RuntimeError("producer one broke")

    made: list[ChunkRenderer] = []

    def make() -> ChunkRenderer:
        kind = ChunkRenderer if not made else Failing  # the second of two fails
        made.append(
            kind(
                factory=runtime.factory,
                store_=runtime.chunk_store,
                engine=engine,
                settings=settings,
            )
        )
        return made[-1]

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="producer one broke"):
        render_job_concurrently(make, planned.job_id, producers=2)
    assert time.monotonic() - started < 1.5  # not the 2.7 s the whole job takes
    assert made[0].stats.rendered < planned.chunks_total - 5
