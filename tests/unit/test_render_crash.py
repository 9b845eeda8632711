"""Embedded mode after a crash: the chunks a dead process held are taken back with their
attempt counted, rendered one at a time, and failed after max_attempts, while the rest
of the book is written (the crash itself, a real process dying, is the fault suite's:
tests/chaos/test_embedded_crash.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pipeline.config import Settings
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.testing import TestToneEngine
from pipeline.plan.jobs import plan_job
from pipeline.plan.prepare import check_inputs
from pipeline.render.jobs import RenderGate, died_on
from pipeline.runner import LocalRuntime, render_file
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import Chunk, ChunkStatus
from pipeline.state.store import TakenOver


class BatchRecorder(TestToneEngine):
    """The test engine, noting the texts of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        self.batches.append([r.text for r in requests])
        return super().render_batch(requests)


def job_chunks(session: Session, job_id: Any) -> list[Chunk]:
    items = store.job_items(session, job_id=job_id)
    return [chunk for item in items for chunk in store.item_chunks(session, item_id=item.id)]


def dead_owner() -> str:
    """A lease owner naming a process of this host that has exited."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    return f"{socket.gethostname()}:{finished.pid}:crashed"


def planned_runtime(tmp_path: Path) -> tuple[LocalRuntime, Path, Any]:
    book = tmp_path / "book.md"
    chapters = [
        f"# Part {part}\n\n"
        + " ".join(f"Sentence {n} is spoken." for n in range(5 * part, 5 * part + 5))
        for part in (0, 1)
    ]
    book.write_text("\n\n".join(chapters) + "\n", encoding="utf-8")
    settings = Settings(
        engine="test-tone",
        data_dir=tmp_path / "data",
        batch_size=4,
        max_attempts=3,
        chunk_max_chars=40,
        normalize_text=False,
        output_format="wav",
        subtitles="none",
    )
    runtime = LocalRuntime.open(settings)
    engine = BatchRecorder()
    runtime.engine = engine
    parsed = check_inputs(book, settings)
    out = tmp_path / "out"
    planned = plan_job(
        runtime.factory, parsed, engine=engine, settings=settings, output_uri=out.as_uri()
    )
    return runtime, book, planned.job_id


def lease_as(runtime: LocalRuntime, job_id: Any, owner: str, limit: int, times: int) -> None:
    """`owner` leases the first `limit` chunks `times` times over (each lease but the last
    expires at once, as a renderer that kept dying would leave them)."""
    for n in range(times):
        ttl = timedelta(seconds=300 if n == times - 1 else -1)
        with transaction(runtime.factory) as session:
            store.lease_chunks(
                session, job_id=job_id, owner=owner, limit=limit, ttl=ttl, max_attempts=50
            )
        time.sleep(0.01)


def test_a_dead_runs_batch_is_rendered_one_at_a_time_with_its_attempt_counted(
    tmp_path: Path,
) -> None:
    runtime, book, job_id = planned_runtime(tmp_path)
    lease_as(runtime, job_id, dead_owner(), limit=4, times=1)
    said: list[str] = []
    outcome = render_file(
        runtime,
        check_inputs(book, runtime.settings),
        output_dir=tmp_path / "out",
        notice=said.append,
    )
    assert outcome.assembly is not None and str(outcome.assembly.status) == "done"
    engine = runtime.engine
    assert isinstance(engine, BatchRecorder)
    # the four the dead run held, alone; then the rest in batches again
    assert [len(batch) for batch in engine.batches][:4] == [1, 1, 1, 1]
    assert max(len(batch) for batch in engine.batches[4:]) > 1
    with transaction(runtime.factory) as session:
        chunks = job_chunks(session, job_id)
        attempts = [chunk.attempts for chunk in chunks]
    assert attempts[:4] == [2, 2, 2, 2] and set(attempts[4:]) == {1}  # the crash counted
    (line,) = said
    assert "died while rendering 4 chunks, 0 to 3" in line and "one at a time" in line


def test_a_chunk_held_by_a_dead_run_for_the_last_attempt_fails_and_the_book_is_written(
    tmp_path: Path,
) -> None:
    runtime, book, job_id = planned_runtime(tmp_path)
    lease_as(runtime, job_id, dead_owner(), limit=1, times=3)  # three runs died on it
    said: list[str] = []
    outcome = render_file(
        runtime,
        check_inputs(book, runtime.settings),
        output_dir=tmp_path / "out",
        notice=said.append,
    )
    assert outcome.assembly is not None
    assert str(outcome.assembly.status) == "partially_failed"
    (failed,) = outcome.assembly.failed_chunks
    assert failed["text"] == "Part 0"  # the heading, read aloud: the first chunk
    assert "gave up after 3 attempts" in failed["error"]
    manifest = tmp_path / "out" / "manifest.json"
    with transaction(runtime.factory) as session:
        chunks = job_chunks(session, job_id)
        statuses = [c.status for c in chunks]
    assert statuses == [ChunkStatus.FAILED] + [ChunkStatus.DONE] * (len(chunks) - 1)
    assert [c["title"] for c in json.loads(manifest.read_text())["chapters"]] == ["Part 1"]
    (line,) = said
    assert "'Part 0' (attempt 3 of 3)" in line and "given up" in line


def test_what_a_dead_run_died_on_is_one_line() -> None:
    owner = "host:4242:abcd"
    one = died_on(owner, [TakenOver(7, "A POISON sentence.", 2, False)], 3)
    assert one == (
        "the previous run (pid 4242) died while rendering chunk 7 'A POISON sentence.' "
        "(attempt 2 of 3); it is tried again alone"
    )
    many = died_on(owner, [TakenOver(n, "x" * 90, 3, n == 5) for n in range(4, 8)], 3)
    assert "4 chunks, 4 to 7" in many and "..." in many and "attempts: 5)" in many
    assert "\n" not in many


def test_a_suspect_renders_alone_and_before_batches_that_arrive_while_it_waits() -> None:
    gate = RenderGate()
    spans: dict[str, tuple[float, float]] = {}
    first_in = threading.Event()

    def hold(name: str, alone: bool, seconds: float) -> None:
        with gate.alone() if alone else gate.shared():
            started = time.monotonic()
            first_in.set()
            time.sleep(seconds)
            spans[name] = (started, time.monotonic())

    first = threading.Thread(target=hold, args=("first batch", False, 0.3))
    second = threading.Thread(target=hold, args=("second batch", False, 0.3))
    first.start()
    second.start()
    first_in.wait(5)
    suspect = threading.Thread(target=hold, args=("suspect", True, 0.2))
    suspect.start()
    time.sleep(0.1)
    late = threading.Thread(target=hold, args=("late batch", False, 0.1))
    late.start()
    for thread in (first, second, suspect, late):
        thread.join(5)
    alone = spans.pop("suspect")
    for name, (start, end) in spans.items():
        assert end <= alone[0] or start >= alone[1], f"{name} overlapped the suspect"
    assert spans["late batch"][0] >= alone[1]  # the suspect did not starve
    assert abs(spans["first batch"][0] - spans["second batch"][0]) < 0.2  # side by side
