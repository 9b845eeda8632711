"""Rendered books read back: M4B chapters at the stitched starts, tags and cover, chapter
files on request, lossless masters, and timing files that match the audio."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from pipeline.assemble.keys import cover_key
from pipeline.audio.cover import load_cover
from pipeline.audio.encode import decode
from pipeline.audio.probe import probe
from pipeline.plan.prepare import check_inputs
from pipeline.runner import LocalRuntime
from tests.support.images import image_bytes
from tests.support.rendering import CountingEngine, render

AAC_FRAME = 1024


def test_m4b_book_has_a_chapter_mark_at_each_stitched_chapter_start(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "art.jpg"
    picture.write_bytes(image_bytes("jpeg", 120, 120))
    out = tmp_path / "out"
    manifest = render(runtime, book, out, cover=picture, output_format="m4b")
    assert manifest["file"] == "book.m4b" and manifest["cover"] == "cover.jpg"
    assert (out / "cover.jpg").read_bytes() == picture.read_bytes()
    info = probe(out / "book.m4b")
    assert info.codec == "aac" and info.brand == "M4B "
    chapters = manifest["chapters"]
    assert [c.title for c in info.chapters] == [c["title"] for c in chapters]
    rate = manifest["sample_rate"]
    for mark, chapter in zip(info.chapters, chapters, strict=True):
        assert abs(mark.start * rate - chapter["start_sample"]) <= AAC_FRAME
    assert info.tags["title"] == "A Small Book" and info.tags["album"] == "A Small Book"
    assert info.tags.get("genre") == "Audiobook"
    assert info.cover == picture.read_bytes()
    whole = decode(out / "book.m4b")
    assert abs(len(whole.audio) - chapters[-1]["end_sample"]) <= AAC_FRAME
    for number, chapter in enumerate(chapters, start=1):
        part = probe(out / chapter["file"])
        assert part.tags["title"] == chapter["title"] and part.tags["track"] == f"{number}/3"
        assert part.cover == picture.read_bytes() and part.chapters == ()


def test_chapter_files_can_be_left_out(runtime: LocalRuntime, book: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = render(runtime, book, out, output_format="mp3", chapter_files=False)
    assert not (out / "chapters").exists()
    assert all(c["file"] is None and "timings" not in c for c in manifest["chapters"])
    marks = probe(out / "book.mp3").chapters
    assert [m.title for m in marks] == ["First Chapter", "Second Chapter", "Third Chapter"]
    # The book is the same with or without chapter files.
    again = render(runtime, book, tmp_path / "with", output_format="mp3")
    assert again["chapters"][1]["start_sample"] == manifest["chapters"][1]["start_sample"]
    assert np.array_equal(
        decode(out / "book.mp3").audio, decode(tmp_path / "with" / "book.mp3").audio
    )


def test_a_lossless_master_is_written_beside_every_delivery_file(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = render(runtime, book, out, output_format="wav", master_format="flac")
    assert manifest["master"] == "master/book.flac"
    pairs = [(manifest["file"], manifest["master"])] + [
        (c["file"], c["master"]) for c in manifest["chapters"]
    ]
    assert pairs[1] == ("chapters/01-first-chapter.wav", "master/chapters/01-first-chapter.flac")
    for delivery, master in pairs:
        assert np.array_equal(decode(out / delivery).audio, decode(out / master).audio)


def _srt_times(text: str) -> list[tuple[float, float]]:
    def seconds(stamp: str) -> float:
        h, m, s = stamp.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    return [
        (seconds(a), seconds(b))
        for a, b in re.findall(r"(\d\d:\d\d:\d\d[,.]\d\d\d) --> (\d\d:\d\d:\d\d[,.]\d\d\d)", text)
    ]


def test_timing_files_follow_the_stitched_audio(runtime: LocalRuntime, tmp_path: Path) -> None:
    long_sentence = " ".join(f"word{n}" for n in range(45)) + "."
    source = tmp_path / "timed.md"
    source.write_text(
        "# Timed\n\n## One\n\nA short sentence. Another one here.\n\n"
        f"{long_sentence}\n\n## Two\n\nThe second chapter speaks.\n"
    )
    out = tmp_path / "out"
    manifest = render(
        runtime, source, out, pause_paragraph_ms=1500, head_silence_ms=500, tail_silence_ms=1000
    )
    rate = manifest["sample_rate"]
    book = json.loads((out / manifest["timings"]["json"]).read_text())
    assert book["file"] == "timed.wav" and book["duration"] == manifest["duration"]
    starts = [c["start_sample"] for c in book["chunks"]]
    assert starts == sorted(starts) and book["chunks"][-1]["end_sample"] <= len(
        decode(out / "timed.wav").audio
    )
    for chapter in manifest["chapters"]:
        offset = chapter["start_sample"]
        mine = [c for c in book["chunks"] if c["chapter"] == chapter["index"]]
        assert [c["text"] for c in mine] == [c["text"] for c in chapter["chunks"]]
        for timed, listed in zip(mine, chapter["chunks"], strict=True):
            assert abs((timed["start_sample"] - offset) / rate - listed["start"]) < 0.001
        # The chapter file's own timings count from its first sample.
        own = json.loads((out / chapter["timings"]["json"]).read_text())
        assert own["chunks"][0]["start_sample"] == mine[0]["start_sample"] - offset
        assert own["chunks"][0]["start"] >= 0.5  # after the head silence
        audio = decode(out / chapter["file"]).audio
        assert own["chunks"][-1]["end_sample"] <= len(audio) - rate  # before the 1 s tail
        # The chunk audio really is where the timings say: silence around it, sound inside.
        for chunk in own["chunks"]:
            inside = audio[chunk["start_sample"] : chunk["end_sample"]]
            assert np.max(np.abs(inside)) > 0.05
        gap = audio[own["chunks"][0]["end_sample"] + 10 : own["chunks"][1]["start_sample"] - 10]
        assert gap.size and np.max(np.abs(gap)) == 0.0
    srt = (out / manifest["timings"]["srt"]).read_text()
    vtt = (out / manifest["timings"]["vtt"]).read_text()
    assert vtt.startswith("WEBVTT\n") and _srt_times(vtt) == _srt_times(srt)
    times = _srt_times(srt)
    assert all(a < b for a, b in times) and all(b <= c for (_, b), (c, _) in pairwise(times))
    assert times[-1][1] <= manifest["duration"] + 0.001
    # The 45-word chunk became several cues of at most two 42-character lines, sharing
    # its time in proportion to their length.
    blocks = [b.split("\n")[2:] for b in srt.strip().split("\n\n")]
    assert all(len(lines) <= 2 and all(len(line) <= 42 for line in lines) for lines in blocks)
    long_cues = [i for i, lines in enumerate(blocks) if any("word" in line for line in lines)]
    assert len(long_cues) >= 4
    chunk = next(c for c in book["chunks"] if c["text"] == long_sentence)
    first, last = times[long_cues[0]], times[long_cues[-1]]
    assert first[0] == pytest.approx(chunk["start"], abs=0.002)
    assert last[1] == pytest.approx(chunk["end"], abs=0.002)


def test_timing_files_can_be_turned_off(runtime: LocalRuntime, book: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = render(runtime, book, out, subtitles="none")
    assert "timings" not in manifest and not list(out.rglob("*.srt"))


def test_worker_steps_write_the_same_files_as_embedded_with_presets_and_masters(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    """Room tone, head and tail silence, masters, cover and chapter marks come out the
    same from assemble_item + finalize_job (workers) as from the one-pass assembly."""
    from pipeline.assemble.book import finalize_job
    from pipeline.assemble.items import assemble_item
    from pipeline.plan.jobs import plan_job
    from pipeline.render.jobs import render_job
    from pipeline.render.renderer import ChunkRenderer
    from pipeline.state import store
    from pipeline.state.db import transaction
    from pipeline.storage.local import LocalObjectStore

    picture = tmp_path / "art.png"
    picture.write_bytes(image_bytes("png", 40, 40))
    options = {"output_format": "m4b", "master_format": "wav", "loudness_preset": "acx"}
    first = render(runtime, book, tmp_path / "one-pass", cover=picture, **options)
    steps = tmp_path / "steps"
    output = LocalObjectStore(steps)
    cover = load_cover(picture)
    output.put(cover_key(cover), cover.data, content_type=cover.mime_type)  # as submit does
    engine = CountingEngine()
    planned = plan_job(
        runtime.factory,
        check_inputs(book, runtime.settings),
        engine=engine,
        settings=runtime.settings,
        output_uri=steps.as_uri(),
        cover=cover,
    )
    renderer = ChunkRenderer(
        factory=runtime.factory,
        store_=runtime.chunk_store,
        engine=engine,
        settings=runtime.settings,
    )
    render_job(renderer, planned.job_id)
    with transaction(runtime.factory) as session:
        items = store.claim_ready_items(session, job_id=planned.job_id)
    for item_id in items:
        assemble_item(
            runtime.factory, item_id=item_id, chunk_store=runtime.chunk_store, output_store=output
        )
    with transaction(runtime.factory) as session:
        assert store.claim_finalization(session, job_id=planned.job_id)
    finalize_job(
        runtime.factory, job_id=planned.job_id, chunk_store=runtime.chunk_store, output_store=output
    )
    second = json.loads((steps / "manifest.json").read_text())
    assert second["loudness"] == first["loudness"] and second["cover"] == "cover.png"
    for key in [first["master"], *(c["master"] for c in first["chapters"])]:
        one, two = decode(tmp_path / "one-pass" / key), decode(steps / key)
        assert one.audio.size and np.array_equal(one.audio, two.audio), key
    # The room-tone bed is in the chapter files exactly where it is in the book.
    whole = decode(steps / second["master"]).audio
    for chapter in second["chapters"]:
        part = decode(steps / chapter["master"]).audio
        np.testing.assert_array_equal(part, whole[chapter["start_sample"] : chapter["end_sample"]])
        assert np.max(np.abs(part[:1000])) > 0  # the head is room tone, not digital silence
    marks = probe(steps / second["file"]).chapters
    assert [m.title for m in marks] == [c["title"] for c in second["chapters"]]
    assert probe(steps / second["file"]).cover == picture.read_bytes()
