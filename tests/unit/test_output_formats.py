"""Files that say what they are: M4B/MP3/Opus chapters, tags and covers, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.assemble.keys import cover_key
from pipeline.audio.cover import cover_from_bytes, load_cover
from pipeline.audio.encode import ChapterMark, FileMeta, decode, encode
from pipeline.audio.probe import probe
from pipeline.errors import InputError
from tests.support.images import image_bytes

SR = 22050


def speechlike(seconds: float) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def marks() -> tuple[ChapterMark, ...]:
    # Chapter starts on odd samples, not on frame or millisecond boundaries.
    return (
        ChapterMark("Prologue", 0, 33_333),
        ChapterMark("The Storm", 33_333, 77_777),
        ChapterMark("Épilogue — “After”", 77_777, 110_250),
    )


@pytest.mark.parametrize(("fmt", "kind"), [("m4b", "jpeg"), ("mp3", "png"), ("opus", "jpeg")])
def test_book_files_carry_chapters_tags_and_cover(tmp_path: Path, fmt: str, kind: str) -> None:
    picture = image_bytes(kind)
    meta = FileMeta(
        {"title": "A Book", "album": "A Book", "artist": "Ann Author", "genre": "Audiobook"},
        cover_from_bytes(picture),
        marks(),
    )
    path = tmp_path / f"book.{fmt}"
    path.write_bytes(encode(speechlike(5.0), SR, fmt, meta=meta))
    info = probe(path)
    assert [c.title for c in info.chapters] == [m.title for m in marks()]
    for chapter, mark in zip(info.chapters, marks(), strict=True):
        # Within one AAC frame (1024 samples) of the exact start; containers keep ms.
        assert abs(chapter.start - mark.start / SR) <= 1024 / SR
    assert info.chapters[-1].end == pytest.approx(5.0, abs=0.03)
    tags = {k.lower(): v for k, v in info.tags.items()}
    assert tags["title"] == "A Book" and tags["album"] == "A Book"
    assert tags["artist"] == "Ann Author"
    assert info.cover == picture
    decoded = decode(path)
    assert abs(decoded.duration - 5.0) < 0.03


def test_m4b_is_an_audiobook_aac_file_that_starts_on_its_first_sample(tmp_path: Path) -> None:
    audio = np.zeros(SR * 2, np.float32)
    audio[SR : SR + 200] = 0.5  # a click exactly 1 s in
    path = tmp_path / "click.m4b"
    path.write_bytes(encode(audio, SR, "m4b"))
    info = probe(path)
    assert info.codec == "aac" and info.brand == "M4B " and info.sample_rate == SR
    decoded = decode(path)
    assert len(decoded.audio) == len(audio)  # priming skipped, padding cut by the edit list
    onset = int(np.argmax(np.abs(decoded.audio) > 0.2))
    assert abs(onset - SR) <= 2


def test_mp3_chapters_are_id3_frames_in_version_2_3(tmp_path: Path) -> None:
    path = tmp_path / "book.mp3"
    path.write_bytes(
        encode(speechlike(5.0), SR, "mp3", meta=FileMeta({"title": "x"}, None, marks()))
    )
    head = path.read_bytes()[:4096]
    assert head[:3] == b"ID3" and head[3] == 3  # ID3v2.3
    assert b"CTOC" in head and head.count(b"CHAP") == 3


def test_flac_master_keeps_cover_and_tags(tmp_path: Path) -> None:
    picture = image_bytes("png")
    path = tmp_path / "master.flac"
    path.write_bytes(
        encode(
            speechlike(1.0), SR, "flac", meta=FileMeta({"title": "M"}, cover_from_bytes(picture))
        )
    )
    info = probe(path)
    assert info.cover == picture and info.tags["title"] == "M"


def test_cover_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "cover.png"
    good.write_bytes(image_bytes("png", 30, 20))
    cover = load_cover(good)
    assert (cover.mime_type, cover.width, cover.height, cover_key(cover)) == (
        "image/png",
        30,
        20,
        "cover.png",
    )
    cases = {
        "missing.jpg": None,
        "empty.jpg": b"",
        "text.jpg": b"not an image at all",
        "broken.jpg": image_bytes("jpeg")[:40],
    }
    messages = []
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as caught:
            load_cover(tmp_path / name)
        messages.append(caught.value.message)
    assert "no such file" in messages[0]
    assert "is empty" in messages[1]
    assert "not a JPEG or PNG" in messages[2]
    assert "cannot be decoded" in messages[3]


def test_a_books_own_cover_is_used_and_an_unusable_one_is_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dataclasses import dataclass

    from pipeline.audio.cover import document_cover

    @dataclass
    class Found:  # the shape the EPUB reader gives a Document's cover
        data: bytes
        mime_type: str

    @dataclass
    class Book:
        cover: Found | None

    picture = image_bytes("jpeg")
    cover = document_cover(Book(Found(picture, "image/jpeg")))
    assert cover is not None and cover.data == picture and cover.mime_type == "image/jpeg"
    assert document_cover(Book(None)) is None
    assert document_cover(Book(Found(b"GIF89a....", "image/gif"))) is None
    assert "not a JPEG or PNG" in caplog.text
