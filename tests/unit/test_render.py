"""The embedded pipeline end to end with the test engine: outputs, resume, cache, failures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

import pipeline.render.jobs as job_driver
from pipeline.audio.encode import decode
from pipeline.config import Settings
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.testing import TestToneEngine
from pipeline.errors import InputError, RetryableError
from pipeline.plan.prepare import check_inputs
from pipeline.runner import LocalRuntime, render_file
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, ItemStatus, JobStatus
from tests.support.rendering import CountingEngine, long_book, run


def test_render_writes_book_chapters_and_manifest(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    outcome = run(runtime, CountingEngine(), book, tmp_path / "out")
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    assert manifest["title"] == "A Small Book" and manifest["file"] == "book.wav"
    assert [c["title"] for c in manifest["chapters"]] == [
        "First Chapter",
        "Second Chapter",
        "Third Chapter",
    ]
    assert [c["file"] for c in manifest["chapters"]] == [
        "chapters/01-first-chapter.wav",
        "chapters/02-second-chapter.wav",
        "chapters/03-third-chapter.wav",
    ]
    first_texts = [c["text"] for c in manifest["chapters"][0]["chunks"]]
    assert first_texts == [
        "First Chapter",  # the heading is read first, as its own paragraph
        "The first sentence is here. And a second one follows it.",
        "A new paragraph starts now. It has two sentences.",
    ]
    whole = decode(out / "book.wav")
    assert abs(whole.duration - manifest["duration"]) < 0.001
    for chapter in manifest["chapters"]:
        audio = decode(out / chapter["file"]).audio
        start = chapter["start_sample"]
        assert chapter["end_sample"] - start == len(audio)
        # Chapter files are slices of the book's samples: equal to the sample.
        np.testing.assert_array_equal(audio, whole.audio[start : start + len(audio)])
        assert abs(len(audio) / whole.sample_rate - chapter["duration"]) < 0.001
        ends = [(c["start"], c["end"]) for c in chapter["chunks"]]
        assert ends[0][0] == 0.0 and abs(ends[-1][1] - chapter["duration"]) < 0.001
        assert all(a[1] < b[0] for a, b in pairwise(ends))  # pauses between chunks
    with transaction(runtime.factory) as session:
        job = store.get_job(session, outcome.job.job_id)
        assert job.output_uri == out.resolve().as_uri()  # where the files are, kept after finishing
        assert (
            job.audio_seconds is not None and abs(job.audio_seconds - manifest["duration"]) < 0.001
        )
    assert abs(manifest["loudness"]["integrated_lufs"] + 18.0) <= 0.5
    assert manifest["loudness"]["true_peak_dbtp"] <= -1.0


def test_interrupted_render_resumes_rendering_only_missing_chunks(
    runtime: LocalRuntime, tmp_path: Path, settings: Settings
) -> None:
    source = long_book(tmp_path)
    runtime.settings = settings.model_copy(update={"batch_size": 4})
    first = CountingEngine(interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        run(runtime, first, source, tmp_path / "out")
    with transaction(runtime.factory) as session:
        (job,) = store.list_jobs(session)
        progress = store.job_progress(session, job_id=job.id)
    assert progress.chunks_done == 8 and progress.chunks_leased == 0  # Ctrl-C handed leases back
    second = CountingEngine()
    outcome = run(runtime, second, source, tmp_path / "out")
    assert outcome.job.resumed and outcome.job.job_id == job.id
    assert len(second.requests) == progress.chunks_total - 8
    assert not set(second.requests) & set(first.requests)
    # And the result is what one uninterrupted run produces.
    clean = CountingEngine()
    fresh_runtime = LocalRuntime.open(
        runtime.settings.model_copy(update={"data_dir": tmp_path / "other"})
    )
    run(fresh_runtime, clean, source, tmp_path / "clean")
    assert len(clean.requests) == progress.chunks_total
    assert (tmp_path / "out" / "long.wav").read_bytes() == (
        tmp_path / "clean" / "long.wav"
    ).read_bytes()


def test_rerunning_a_finished_job_renders_nothing(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    run(runtime, CountingEngine(), book, tmp_path / "out")
    again = CountingEngine()
    outcome = run(runtime, again, book, tmp_path / "out")
    assert again.requests == [] and outcome.assembly is None and outcome.job.resumed


def test_fresh_starts_a_new_job_and_cancels_the_old_one(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    first = run(runtime, CountingEngine(), book, tmp_path / "out")
    second = run(runtime, CountingEngine(), book, tmp_path / "out", fresh=True)
    assert second.job.job_id != first.job.job_id and not second.job.resumed
    with transaction(runtime.factory) as session:
        assert (
            store.get_job(session, first.job.job_id).status == JobStatus.DONE
        )  # final: never moves back
        assert store.get_job(session, second.job.job_id).status == JobStatus.DONE


def test_identical_chunks_are_rendered_once_across_jobs(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    a = tmp_path / "a.txt"
    a.write_text("Shared sentence one.\n\nOnly in A.\n")
    b = tmp_path / "b.txt"
    b.write_text("Shared sentence one.\n\nOnly in B, and different.\n")
    run(runtime, CountingEngine(), a, tmp_path / "out-a")
    engine = CountingEngine()
    outcome = run(runtime, engine, b, tmp_path / "out-b")
    assert engine.requests == ["Only in B, and different."]
    assert (outcome.stats.cached, outcome.stats.rendered) == (1, 1)
    chunk_files = list((runtime.settings.data_dir / "objects" / "chunks").rglob("*.wav"))
    assert len(chunk_files) == 3


def test_a_failing_chunk_fails_alone_and_a_rerun_retries_it(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    broken = CountingEngine(fail_on="Tiny")
    outcome = run(runtime, broken, book, tmp_path / "out")
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.PARTIALLY_FAILED
    assert outcome.stats.failed == 1 and outcome.stats.rendered == 6  # 4 + 3 titles, one unsayable
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [c["title"] for c in manifest["chapters"]] == ["First Chapter", "Third Chapter"]
    assert manifest["failed_chunks"][0]["item"] == "Second Chapter"
    assert "cannot say 'Tiny'" in manifest["failed_chunks"][0]["error"]
    with transaction(runtime.factory) as session:
        (failed,) = store.failed_chunks(session, job_id=outcome.job.job_id)
        assert failed.status == ChunkStatus.FAILED and "Tiny" in failed.text
    fixed = CountingEngine()
    again = run(runtime, fixed, book, tmp_path / "out")
    assert fixed.requests == [failed.text]
    assert again.assembly is not None and again.assembly.status == JobStatus.DONE
    assert len(json.loads((tmp_path / "out" / "manifest.json").read_text())["chapters"]) == 3


def test_input_with_nothing_to_speak_is_refused_before_any_state_exists(
    tmp_path: Path, settings: Settings
) -> None:
    source = tmp_path / "code.md"
    source.write_text("```\nprint('only code')\n```\n\n<!-- a comment -->\n\n![img](x.png)\n")
    with pytest.raises(InputError, match="has no text to speak"):
        check_inputs(source, settings)
    assert not settings.data_dir.exists()  # no database, no cache folder


def test_output_folder_problems_are_found_before_any_work(tmp_path: Path) -> None:
    from pipeline.plan.prepare import check_output_dir

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_output_dir(blocker)
    with pytest.raises(InputError, match="cannot create output folder"):
        check_output_dir(blocker / "sub")
    made = check_output_dir(tmp_path / "new" / "out")
    assert made.is_dir() and made.is_absolute()


class SilentOn(CountingEngine):
    """Returns silence for chunks containing a word, as an engine might for unspeakable text."""

    def __init__(self, word: str) -> None:
        super().__init__()
        self.word = word

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        results = super().render_batch(requests)
        return [
            SynthesisResult(np.zeros(len(r.audio) // 4, np.float32), r.sample_rate)
            if self.word in q.text
            else r
            for q, r in zip(requests, results, strict=True)
        ]


def test_a_chunk_rendered_as_silence_fails_alone(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    outcome = run(runtime, SilentOn("Tiny"), book, tmp_path / "out")
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.PARTIALLY_FAILED
    (failed,) = outcome.assembly.failed_chunks
    assert "no audible speech" in failed["error"] and failed["item"] == "Second Chapter"
    assert outcome.stats.failed == 1


def test_leases_of_a_dead_local_process_are_taken_back_at_once(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    import socket
    import subprocess
    import time

    from pipeline.plan.jobs import plan_job

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no running process: a renderer killed with -9
    planned = plan_job(
        runtime.factory,
        check_inputs(book, runtime.settings),
        engine=CountingEngine(),
        settings=runtime.settings,
        output_uri=(tmp_path / "out").resolve().as_uri(),
    )
    with transaction(runtime.factory) as session:
        store.start_job(session, job_id=planned.job_id)
        held = store.lease_chunks(
            session,
            job_id=planned.job_id,
            owner=f"{socket.gethostname()}:{dead.pid}:x",
            limit=2,
            ttl=timedelta(minutes=5),
            max_attempts=3,
        )
    assert len(held) == 2
    engine = CountingEngine()
    started = time.monotonic()
    outcome = run(runtime, engine, book, tmp_path / "out")
    assert time.monotonic() - started < 5  # not the 5-minute lease expiry
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    assert len(engine.requests) == 7  # every chunk, the dead process's two included


def test_a_live_process_holding_chunks_is_waited_for(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    import os
    import socket
    import threading

    from pipeline.plan.jobs import plan_job

    planned = plan_job(
        runtime.factory,
        check_inputs(book, runtime.settings),
        engine=CountingEngine(),
        settings=runtime.settings,
        output_uri=(tmp_path / "out").resolve().as_uri(),
    )
    other = f"{socket.gethostname()}:{os.getpid()}:other"
    with transaction(runtime.factory) as session:
        store.start_job(session, job_id=planned.job_id)
        (held,) = store.lease_chunks(
            session,
            job_id=planned.job_id,
            owner=other,
            limit=1,
            ttl=timedelta(minutes=5),
            max_attempts=3,
        )

    def other_process_finishes() -> None:
        # The other renderer stores its chunk and completes it half a second later.
        audio = TestToneEngine().render_one(SynthesisRequest(held.text, "tone", {})).audio
        from pipeline.audio.process import to_wav_bytes
        from pipeline.storage.keys import chunk_key

        runtime.chunk_store.put_if_absent(
            chunk_key(held.content_hash), to_wav_bytes(audio, 22050), content_type="audio/wav"
        )
        with transaction(runtime.factory) as session:
            assert store.complete_chunk(
                session,
                chunk_id=held.chunk_id,
                owner=other,
                object_key=chunk_key(held.content_hash),
                duration=len(audio) / 22050,
                sample_rate=22050,
            )

    timer = threading.Timer(0.5, other_process_finishes)
    timer.start()
    engine = CountingEngine()
    outcome = run(runtime, engine, book, tmp_path / "out")
    timer.join()
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    assert held.text not in engine.requests and len(engine.requests) == 6


def test_a_folder_overwritten_by_another_job_is_reassembled(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.md"
    other.write_text("# Other\n\n## Only\n\nA different book entirely.\n")
    first = run(runtime, CountingEngine(), book, tmp_path / "out")
    run(runtime, CountingEngine(), other, tmp_path / "out")
    again = run(runtime, CountingEngine(), book, tmp_path / "out")
    assert again.assembly is not None  # not "already finished": the folder held the other book
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["job_id"] == str(first.job.job_id) and manifest["title"] == "A Small Book"


def test_identical_renders_started_together_share_one_job(
    settings: Settings, book: Path, tmp_path: Path
) -> None:
    import threading

    engines = [CountingEngine(), CountingEngine()]
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def render(engine: CountingEngine) -> None:
        runtime = LocalRuntime.open(settings)
        runtime.engine = engine
        checked = check_inputs(book, settings)
        barrier.wait()
        outcomes.append(render_file(runtime, checked, output_dir=tmp_path / "out"))

    LocalRuntime.open(settings)  # migrate once: separate processes each migrate, threads must not
    threads = [threading.Thread(target=render, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2
    runtime = LocalRuntime.open(settings)
    with transaction(runtime.factory) as session:
        (job,) = store.list_jobs(session)
        assert job.status == JobStatus.DONE
    rendered = engines[0].requests + engines[1].requests
    assert sorted(rendered) == sorted(set(rendered)) and len(rendered) == 7  # nothing twice


class AlwaysRetryable(CountingEngine):
    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        if any("Tiny" in r.text for r in requests):
            raise RetryableError("engine out of memory")
        return super().render_batch(requests)


def test_retryable_failures_back_off_then_fail_and_are_counted(
    runtime: LocalRuntime, book: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []  # the job driver's backoff sleeps, between leases
    monkeypatch.setattr(job_driver.time, "sleep", waits.append)
    outcome = run(runtime, AlwaysRetryable(), book, tmp_path / "out")
    assert outcome.stats.failed == 1 and outcome.assembly is not None
    assert outcome.assembly.status == JobStatus.PARTIALLY_FAILED
    assert len(waits) == 2 and waits[0] > 0 and waits[1] > waits[0] * 0.9  # grows with each attempt


def test_fresh_cancels_a_job_that_is_still_rendering(runtime: LocalRuntime, tmp_path: Path) -> None:
    source = long_book(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(runtime, CountingEngine(interrupt_after=1), source, tmp_path / "out")
    with transaction(runtime.factory) as session:
        (old,) = store.list_jobs(session)
        assert old.status == JobStatus.RENDERING
    outcome = run(runtime, CountingEngine(), source, tmp_path / "out", fresh=True)
    assert outcome.job.job_id != old.id and not outcome.job.resumed
    with transaction(runtime.factory) as session:
        assert store.get_job(session, old.id).status == JobStatus.CANCELLED


def test_files_an_earlier_assembly_listed_are_removed_when_no_longer_produced(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    source = tmp_path / "book.md"
    source.write_text("# B\n\n## One\n\nFirst.\n\n## Two\n\nSecond.\n\n## Three\n\nThird.\n")
    out = tmp_path / "out"
    run(runtime, CountingEngine(), source, out)
    (out / "notes.txt").write_text("the user's own file")
    source.write_text("# B\n\n## One\n\nFirst.\n\n## Deux\n\nSecond.\n")
    run(runtime, CountingEngine(), source, out)
    # Each chapter's audio and its timing files; the renamed chapter's are gone.
    assert sorted(p.name for p in (out / "chapters").iterdir()) == sorted(
        f"{stem}{suffix}"
        for stem in ("01-one", "02-deux")
        for suffix in (".wav", ".srt", ".vtt", ".timings.json")
    )
    assert (out / "notes.txt").read_text() == "the user's own file"  # never listed: never touched


def test_manifest_gives_the_output_files_own_sample_rate(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"output_format": "opus"})
    run(runtime, CountingEngine(), book, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["sample_rate"], manifest["file_sample_rate"]) == (22050, 48000)
    assert decode(tmp_path / "out" / manifest["file"]).sample_rate == 48000


def test_another_books_files_in_a_shared_folder_are_left_alone(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    novel, essays = tmp_path / "novel.md", tmp_path / "essays.md"
    novel.write_text("# Novel\n\n## Opening\n\nIt began.\n\n## Middle\n\nIt went on.\n")
    essays.write_text("# Essays\n\n## On Time\n\nTime passes.\n")
    run(runtime, CountingEngine(), novel, tmp_path / "shelf")
    run(runtime, CountingEngine(), essays, tmp_path / "shelf")
    names = sorted(
        str(p.relative_to(tmp_path / "shelf")) for p in (tmp_path / "shelf").rglob("*.wav")
    )
    assert names == [
        "chapters/01-on-time.wav",
        "chapters/01-opening.wav",
        "chapters/02-middle.wav",
        "essays.wav",
        "novel.wav",
    ]


def test_a_rerun_that_produces_nothing_keeps_the_earlier_audio(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    source = tmp_path / "novel.md"
    source.write_text("# Novel\n\n## Opening\n\nIt began.\n")
    run(runtime, CountingEngine(), source, tmp_path / "out")
    source.write_text("# Novel\n\n## Opening\n\nIt began differently.\n")
    outcome = run(runtime, CountingEngine(fail_on="differently"), source, tmp_path / "out")
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.FAILED
    assert (tmp_path / "out" / "novel.wav").exists() and (
        tmp_path / "out" / "chapters" / "01-opening.wav"
    ).exists()


def test_an_upload_failure_surfaces_and_leaves_no_encoder_thread(
    runtime: LocalRuntime, book: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from pipeline.assemble.writer import EncoderThread
    from pipeline.storage.local import LocalObjectStore

    def refuse(self: LocalObjectStore, key: str, source: object, *, content_type: str) -> None:
        if key == "book.wav":
            raise OSError("disk full")
        return original(self, key, source, content_type=content_type)  # type: ignore[arg-type]

    original = LocalObjectStore.put_file
    monkeypatch.setattr(LocalObjectStore, "put_file", refuse)
    with pytest.raises(OSError, match="disk full"):
        run(runtime, CountingEngine(), book, tmp_path / "out")
    assert not [t for t in threading.enumerate() if isinstance(t, EncoderThread)]


def test_short_chapters_keep_their_exact_length(runtime: LocalRuntime, tmp_path: Path) -> None:
    class Tiny(CountingEngine):
        def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
            results = super().render_batch(requests)
            return [
                SynthesisResult(np.full(300, 0.5, np.float32), 22050) if "Two" in q.text else r
                for q, r in zip(requests, results, strict=True)
            ]

    source = tmp_path / "b.md"
    source.write_text("# B\n\n## One\n\nOne here.\n\n## Two\n\nTwo.\n")
    run(runtime, Tiny(), source, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    second = manifest["chapters"][1]
    audio = decode(tmp_path / "out" / second["file"]).audio
    assert len(audio) == second["end_sample"] - second["start_sample"]


def test_titles_can_be_left_unread_but_a_heading_only_chapter_is_still_heard(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    source = tmp_path / "b.md"
    source.write_text("# B\n\n## One\n\nBody one.\n\n## Interlude\n\n## Two\n\nBody two.\n")
    runtime.settings = runtime.settings.model_copy(update={"read_titles": False})
    engine = CountingEngine()
    run(runtime, engine, source, tmp_path / "out")
    assert engine.requests == ["Body one.", "Interlude", "Body two."]
    runtime.settings = runtime.settings.model_copy(update={"read_titles": True})
    spoken = CountingEngine()
    outcome = run(runtime, spoken, source, tmp_path / "titled")
    assert not outcome.job.resumed  # a different job: titles change what is spoken
    assert spoken.requests == ["One", "Two"]  # the rest came from the cache
    assert outcome.stats.cached == 3


def test_distributed_steps_write_the_same_audio_as_the_one_pass_embedded_assembly(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    """assemble_item per chapter then finalize_job (workers) == the embedded single pass."""
    from pipeline.assemble.book import finalize_job
    from pipeline.assemble.items import assemble_item
    from pipeline.audio.encode import decode
    from pipeline.plan.jobs import plan_job
    from pipeline.render.jobs import render_job
    from pipeline.render.renderer import ChunkRenderer
    from pipeline.storage.local import LocalObjectStore

    embedded = run(runtime, CountingEngine(), book, tmp_path / "one-pass")
    workers_out = tmp_path / "steps"
    engine = CountingEngine()
    planned = plan_job(
        runtime.factory,
        check_inputs(book, runtime.settings),
        engine=engine,
        settings=runtime.settings,
        output_uri=workers_out.as_uri(),
    )
    renderer = ChunkRenderer(
        factory=runtime.factory,
        store_=runtime.chunk_store,
        engine=engine,
        settings=runtime.settings,
    )
    render_job(renderer, planned.job_id)
    assert engine.requests == []  # every chunk from the cache
    output = LocalObjectStore(workers_out)
    with transaction(runtime.factory) as session:
        items = store.claim_ready_items(session, job_id=planned.job_id)
    for item_id in reversed(items):  # any order: each item is mastered on its own
        assert (
            assemble_item(
                runtime.factory,
                item_id=item_id,
                chunk_store=runtime.chunk_store,
                output_store=output,
            ).status
            == ItemStatus.DONE
        )
    with transaction(runtime.factory) as session:
        assert store.claim_finalization(session, job_id=planned.job_id)
    result = finalize_job(
        runtime.factory, job_id=planned.job_id, chunk_store=runtime.chunk_store, output_store=output
    )
    assert result.status == JobStatus.DONE and embedded.assembly is not None
    first = json.loads((tmp_path / "one-pass" / "manifest.json").read_text())
    second = json.loads((workers_out / "manifest.json").read_text())
    assert [c["file"] for c in first["chapters"]] == [c["file"] for c in second["chapters"]]
    for name in [first["file"], *(c["file"] for c in first["chapters"])]:
        one, two = decode(tmp_path / "one-pass" / name), decode(workers_out / name)
        assert one.audio.size > 0 and np.array_equal(one.audio, two.audio), name
    assert first["loudness"] == second["loudness"]
