"""The read-along EPUB from an output folder: the spoken chunks found in the text as
written, clips that tile each audio file, and the packed EPUB (epubcheck included)
built from folders written here: tone audio, manifests and timing files as a render
writes them."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.assemble.read_along import _clips, write_read_along
from pipeline.assemble.read_along_text import (
    SpokenChunk,
    TimedWord,
    body_markup,
    chunk_words,
    place_chunks,
    source_blocks,
)
from pipeline.audio.encode import decode, encode
from pipeline.errors import InputError
from pipeline.ingest.catalogue import CatalogueFormat, parse_csv
from pipeline.ingest.markdown import parse_markdown
from pipeline.storage.local import LocalObjectStore
from pipeline.text.normalize import normalize_text
from tests.support.epubcheck import assert_epubcheck_passes
from tests.support.epubs import png

RATE = 22_050
BOOK = """---
title: Small Sums
author: A. Writer
language: en-GB
---

# Small Sums

## The Price

It cost $5 on 3 May. Dr. Smith paid — twice.

Nobody asked why.

## Change

He kept 12% of it.
"""


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def spoken(text: str) -> str:
    return normalize_text(text)


def sentences(chapter_text: list[str]) -> list[str]:
    """The chunks a render speaks for these paragraphs: one per sentence here."""
    out: list[str] = []
    for paragraph in chapter_text:
        out += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", spoken(paragraph)) if s]
    return out


def timed_words(text: str, start: float, end: float) -> list[dict[str, Any]]:
    words = text.split()
    step = (end - start) / len(words)
    return [
        {"text": w, "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3)}
        for i, w in enumerate(words)
    ]


def write_folder(
    root: Path, *, fmt: str = "mp3", words: bool = False, chapter_files: bool = True
) -> tuple[LocalObjectStore, Any]:
    """An output folder of BOOK as a render leaves it: chapter files (or one book file),
    the manifest and per-file timing JSON; with `words`, QA's word times in them."""
    document = parse_markdown(BOOK, default_title="small")
    folder = LocalObjectStore(root)
    entries: list[dict[str, Any]] = []
    book_rows: list[dict[str, Any]] = []
    clock = 0.0
    for index, chapter in enumerate(document.chapters, start=1):
        texts = sentences([chapter.title, *chapter.paragraphs])
        chunks, rows, at = [], [], 0.0
        for n, text in enumerate(texts):
            length = 0.4 * len(text.split())
            chunk = {"text": text, "start": round(at, 3), "end": round(at + length, 3)}
            row = {"index": n, **chunk}
            if words:
                row["words"] = timed_words(text, at, at + length)
            chunks.append(chunk)
            rows.append(row)
            book_rows.append({**row, "chapter": index, "start": round(clock + at, 3)})
            if words:
                book_rows[-1]["words"] = timed_words(text, clock + at, clock + at + length)
            at += length + 0.5
        duration = round(at, 3)
        entry: dict[str, Any] = {
            "index": index,
            "title": chapter.title,
            "duration": duration,
            "start": round(clock, 3),
            "chunks": chunks,
        }
        if chapter_files:
            key = f"chapters/{index:02d}-c.{fmt}"
            folder.put(key, encode(tone(duration), RATE, fmt), content_type="audio/mpeg")
            timings = f"chapters/{index:02d}-c.timings.json"
            folder.put(timings, json.dumps({"chunks": rows}).encode(), content_type="x")
            entry |= {"file": key, "timings": {"json": timings}}
        entries.append(entry)
        clock += duration
    manifest: dict[str, Any] = {
        "job_id": "6f1f8f1e-0000-4000-8000-000000000001",
        "kind": "book",
        "source": "small.md",
        "title": document.title,
        "author": document.author,
        "format": fmt,
        "chapters": entries,
    }
    if not chapter_files:
        folder.put(f"small.{fmt}", encode(tone(clock), RATE, fmt), content_type="x")
        folder.put(
            "small.timings.json", json.dumps({"chunks": book_rows}).encode(), content_type="x"
        )
        manifest |= {"file": f"small.{fmt}", "timings": {"json": "small.timings.json"}}
    folder.put("manifest.json", json.dumps(manifest).encode(), content_type="x")
    return folder, document


def smil_clips(epub: zipfile.ZipFile) -> dict[str, list[tuple[str, str, float, float]]]:
    """Per SMIL file: (text src, audio src, clip begin, clip end) of every par."""
    out = {}
    for name in sorted(n for n in epub.namelist() if n.endswith(".smil")):
        out[name] = [
            (text, audio, seconds(begin), seconds(end))
            for text, audio, begin, end in re.findall(
                r'<text src="([^"]+)"/><audio src="([^"]+)" clipBegin="([^"]+)" '
                r'clipEnd="([^"]+)"/>',
                epub.read(name).decode(),
            )
        ]
    return out


def seconds(clock: str) -> float:
    h, m, s = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


# --- finding the spoken chunks in the written text ---


def test_each_chunk_spans_its_source_words_as_written() -> None:
    document = parse_markdown(BOOK, default_title="small")
    chapter = document.chapters[0]
    blocks = source_blocks(chapter)
    texts = sentences([chapter.title, *chapter.paragraphs])
    assert "five dollars" in texts[1] and "Doctor" in texts[2]  # what was said
    placement = place_chunks(blocks, [SpokenChunk(t, i, i + 1) for i, t in enumerate(texts)])
    markup = body_markup(placement, set())
    assert '<h1><span id="c1">The Price</span></h1>' in markup
    assert '<span id="c2">It cost $5 on 3 May.</span>' in markup
    assert '<span id="c3">Dr. Smith paid — twice.</span>' in markup  # the dash joins its chunk
    assert '<p><span id="c4">Nobody asked why.</span></p>' in markup
    assert "five" not in markup and "Doctor" not in markup


def test_a_heading_not_read_aloud_is_shown_but_in_no_chunk() -> None:
    chapter = parse_markdown(BOOK, default_title="small").chapters[0]
    texts = sentences(list(chapter.paragraphs))
    placement = place_chunks(
        source_blocks(chapter), [SpokenChunk(t, i, i + 1) for i, t in enumerate(texts)]
    )
    assert body_markup(placement, set()).startswith("<h1>The Price</h1>")
    assert placement.placed_chunks() == [0, 1, 2]


def test_a_source_word_takes_the_times_of_every_spoken_word_it_became() -> None:
    chapter = parse_markdown(BOOK, default_title="small").chapters[0]
    text = spoken("It cost $5 on 3 May.")  # It cost five dollars on the third of May.
    words = tuple(TimedWord(w, float(i), i + 0.5) for i, w in enumerate(text.split()))
    placement = place_chunks(source_blocks(chapter)[1:2], [SpokenChunk(text, 0, 9, words)])
    timed = chunk_words(placement)[0]
    # It cost $5 on 3 May. <- It cost five dollars on the third of May.
    assert timed == [
        ("c1w1", 0.0, 0.5),
        ("c1w2", 1.0, 1.5),
        ("c1w3", 2.0, 3.5),
        ("c1w4", 4.0, 4.5),
        ("c1w5", 5.0, 7.5),
        ("c1w6", 8.0, 8.5),
    ]
    markup = body_markup(placement, {ident for ident, _, _ in timed})
    assert '<span id="c1w3">$5</span>' in markup


def test_a_misheard_word_left_untimed_keeps_its_place() -> None:
    chapter = parse_markdown(BOOK, default_title="small").chapters[1]
    text = spoken("He kept 12% of it.")
    heard = [TimedWord("He", 0.0, 0.2), TimedWord("of", 1.5, 1.6), TimedWord("it.", 1.7, 1.9)]
    placement = place_chunks(source_blocks(chapter)[1:], [SpokenChunk(text, 0, 2, tuple(heard))])
    assert [ident for ident, _, _ in chunk_words(placement)[0]] == ["c1w1", "c1w4", "c1w5"]


# --- clips ---


def test_clips_tile_the_chapter_in_order_inside_the_file() -> None:
    chunks = [SpokenChunk("a b", 0.0, 1.0), SpokenChunk("c d", 1.5, 2.5), SpokenChunk("e", 3, 4)]
    words = {1: [("c2w1", 1.5, 1.9), ("c2w2", 1.2, 1.4), ("c2w3", 2.0, 2.4)]}
    clips = _clips([0, 1, 2], chunks, words, (0.0, 4.2), length_ms=4100)
    assert [(c.text_id, c.begin, c.end, c.group) for c in clips] == [
        ("c1", 0, 1500, None),
        ("c2w1", 1500, 2000, "c2"),  # c2w2, timed before c2w1, stays unhighlighted
        ("c2w3", 2000, 3000, "c2"),
        ("c3", 3000, 4100, None),  # the file is shorter than the manifest says
    ]


def test_a_chunk_starting_past_the_end_is_heard_in_the_clip_before() -> None:
    chunks = [SpokenChunk("a", 0.0, 1.0), SpokenChunk("b", 5.0, 6.0)]
    clips = _clips([0, 1], chunks, {}, (0.0, 6.0), length_ms=4000)
    assert [(c.text_id, c.begin, c.end) for c in clips] == [("c1", 0, 4000)]


# --- the EPUB ---


def test_the_epub_passes_epubcheck_with_sentence_clips(tmp_path: Path) -> None:
    folder, document = write_folder(tmp_path)
    key = write_read_along(folder, document, where="small.md")
    assert key == "small.epub"
    path = tmp_path / key
    with zipfile.ZipFile(path) as epub:
        first = epub.infolist()[0]
        assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
        chapter = epub.read("EPUB/ch1.xhtml").decode()
        assert "It cost $5 on 3 May." in chapter and "five dollars" not in chapter
        clips = smil_clips(epub)
        assert all(group is not None for group in clips.values())
        for name, pars in clips.items():
            audio = {a for _, a, _, _ in pars}
            assert len(audio) == 1
            member = epub.read(f"EPUB/{audio.pop()}")
            number = int(name.removeprefix("EPUB/ch").removesuffix(".smil"))
            # the chapter's own MP3, byte for byte
            assert member == (tmp_path / f"chapters/{number:02d}-c.mp3").read_bytes()
            length = decode(member).duration
            ends = [0.0] + [end for *_, end in pars]
            for (_text, _a, begin, end), before in zip(pars, ends, strict=False):
                assert begin == pytest.approx(before) and begin < end <= length
        opf = epub.read("EPUB/package.opf").decode()
        assert "<dc:language>en-GB</dc:language>" in opf
        assert "<dc:creator>A. Writer</dc:creator>" in opf
        assert 'media:active-class">-epub-media-overlay-active<' in opf
        assert opf.count('property="media:duration"') == 3  # two overlays and the whole
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["read_along"]["file"] == key
    assert manifest["read_along"]["word_clips"] == 0
    assert_epubcheck_passes(path)


def test_word_timings_make_word_clips(tmp_path: Path) -> None:
    folder, document = write_folder(tmp_path, words=True)
    write_read_along(folder, document, where="small.md")
    with zipfile.ZipFile(tmp_path / "small.epub") as epub:
        smil = epub.read("EPUB/ch1.smil").decode()
        chapter = epub.read("EPUB/ch1.xhtml").decode()
    assert '<seq id="s-c2" epub:textref="ch1.xhtml#c2">' in smil
    assert '<text src="ch1.xhtml#c2w3"/>' in smil
    assert '<span id="c2w3">$5</span>' in chapter
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["read_along"]["word_clips"] > 0
    assert manifest["read_along"]["sentence_clips"] == 0
    assert_epubcheck_passes(tmp_path / "small.epub")


def test_a_flac_render_gets_mp3_audio_and_a_book_file_render_its_book(tmp_path: Path) -> None:
    folder, document = write_folder(tmp_path, fmt="flac", chapter_files=False, words=True)
    write_read_along(folder, document, where="small.md")
    with zipfile.ZipFile(tmp_path / "small.epub") as epub:
        audio = [n for n in epub.namelist() if n.startswith("EPUB/audio/")]
        assert audio == ["EPUB/audio/001-small.mp3"]
        length = decode(epub.read(audio[0])).duration
        assert length == pytest.approx(decode((tmp_path / "small.flac").read_bytes()).duration)
        pars = smil_clips(epub)["EPUB/ch2.smil"]
        assert pars[0][2] > 5  # chapter 2 starts at its place in the book file
        assert pars[-1][3] <= length
        assert 'media-type="audio/mpeg"' in epub.read("EPUB/package.opf").decode()
    assert_epubcheck_passes(tmp_path / "small.epub")


def test_a_catalogue_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder, _ = write_folder(tmp_path)
    catalogue = parse_csv("id,text\na,Hello there.\n", CatalogueFormat(), title="items")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match="catalogue") as caught:
        write_read_along(folder, catalogue, where="items.csv")
    assert "\n" not in caught.value.message
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_folder_without_a_manifest_is_refused(tmp_path: Path) -> None:
    document = parse_markdown(BOOK, default_title="small")
    with pytest.raises(InputError, match=r"no manifest\.json"):
        write_read_along(LocalObjectStore(tmp_path), document, where=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_an_m4b_render_keeps_its_aac_and_the_cover_goes_in(tmp_path: Path) -> None:
    folder, document = write_folder(tmp_path, fmt="m4b")
    folder.put("cover.png", png(64, 64), content_type="image/png")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "cover": "cover.png"}))
    write_read_along(folder, document, where="small.md")
    with zipfile.ZipFile(tmp_path / "small.epub") as epub:
        opf = epub.read("EPUB/package.opf").decode()
        assert epub.read("EPUB/audio/001-01-c.m4a") == (tmp_path / "chapters/01-c.m4b").read_bytes()
        assert epub.read("EPUB/cover.png") == (tmp_path / "cover.png").read_bytes()
    assert 'href="audio/001-01-c.m4a" media-type="audio/mp4"' in opf
    assert 'href="cover.png" media-type="image/png" properties="cover-image"' in opf
    assert_epubcheck_passes(tmp_path / "small.epub")
