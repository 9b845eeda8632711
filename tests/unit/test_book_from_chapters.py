"""An MP3 book made of its chapter files' frames (issue 22): the same samples as the
chapter files, to the sample, with every chapter on a frame boundary; encoding once."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.assemble import embedded
from pipeline.audio.concat import ConcatError, Silence, concat_mp3, frame_samples, frames_for
from pipeline.audio.encode import FileMeta, decode, encode
from pipeline.audio.stitch import ChunkLength, Pauses, layout
from pipeline.runner import LocalRuntime
from tests.support.rendering import render

SR = 22050


def packets(data: bytes) -> list[bytes]:
    container = av.open(io.BytesIO(data), "r")
    stream = container.streams.audio[0]
    out = [bytes(p) for p in container.demux(stream) if p.size]
    container.close()
    return out


def chapters_match_the_book(out: Path, manifest: dict) -> None:  # type: ignore[type-arg]
    book = decode(out / manifest["file"]).audio
    assert len(book) == manifest["chapters"][-1]["end_sample"]
    for chapter in manifest["chapters"]:
        audio = decode(out / chapter["file"]).audio
        start = chapter["start_sample"]
        assert len(audio) == chapter["end_sample"] - start
        np.testing.assert_array_equal(audio, book[start : start + len(audio)])


def test_an_mp3_book_is_its_chapter_files_end_to_end(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = render(runtime, book, out, output_format="mp3")
    starts = [c["start_sample"] for c in manifest["chapters"]]
    assert all(start % frame_samples(SR) == 0 for start in starts) and starts[0] == 0
    chapters_match_the_book(out, manifest)
    # the book holds each chapter file's encoded frames, byte for byte: nothing was
    # encoded twice
    book_frames = packets((out / manifest["file"]).read_bytes())
    for chapter in manifest["chapters"]:
        frames = packets((out / chapter["file"]).read_bytes())
        first = chapter["start_sample"] // frame_samples(SR)
        assert book_frames[first : first + len(frames)] == frames
    # the ID3 chapter marks are the chapters' first samples (ID3 keeps milliseconds)
    container = av.open(str(out / manifest["file"]))
    marks = [round(c["start"] * c["time_base"] * SR) for c in container.chapters()]
    container.close()
    assert len(marks) == len(starts)
    assert all(
        abs(mark - start) <= SR // 1000 + 1 for mark, start in zip(marks, starts, strict=True)
    )


def test_when_the_frames_do_not_line_up_the_book_is_encoded_instead(
    runtime: LocalRuntime,
    book: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(embedded, "frames_for", lambda samples, rate: frames_for(samples, rate) + 1)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        manifest = render(runtime, book, out, output_format="mp3")
    assert "encoding it" in caplog.text
    book_audio = decode(out / manifest["file"]).audio
    assert abs(len(book_audio) - manifest["chapters"][-1]["end_sample"]) <= 1


def test_chapter_files_off_keeps_the_plain_layout(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    manifest = render(runtime, book, tmp_path / "out", output_format="mp3", chapter_files=False)
    assert manifest["chapters"][1]["start_sample"] % frame_samples(SR) != 0


def test_layout_aligns_chapter_starts_by_less_than_the_alignment() -> None:
    chunks = [
        [ChunkLength("a", True, 10_001)],
        [ChunkLength("b", True, 7_777)],
        [ChunkLength("c", True, 5)],
    ]
    pauses = Pauses(100, 200, 1000)
    plain = layout(chunks, SR, pauses)
    aligned = layout(chunks, SR, pauses, align=576)
    assert [s.start % 576 for s in aligned] == [0, 0, 0]
    for before, after, previous in zip(plain[1:], aligned[1:], aligned, strict=False):
        gap = after.start - previous.end
        assert SR <= gap < SR + 576  # the 1000 ms pause, lengthened by under a frame
        assert after.end - after.start == before.end - before.start


def test_a_chapter_off_its_frame_boundary_is_refused() -> None:
    one = encode(np.zeros(SR, np.float32), SR, "mp3")
    with pytest.raises(ConcatError, match="chapter 2 starts at"):
        concat_mp3(
            io.BytesIO(),
            [one, Silence(10), one],
            sample_rate=SR,
            starts=[0, 576 * 7],
            meta=FileMeta(),
        )
