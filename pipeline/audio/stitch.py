"""Stitch chunk audio into one book timeline; chapter files are exact slices of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.engines.base import AudioArray


@dataclass(frozen=True)
class Pauses:
    """Silence inserted between chunks, in milliseconds."""

    sentence_ms: int
    paragraph_ms: int
    chapter_ms: int


@dataclass(frozen=True)
class ChunkAudio:
    text: str
    paragraph_start: bool
    audio: AudioArray


@dataclass(frozen=True)
class ChunkSpan:
    """Where a chunk sits, in samples from the start of its chapter."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class ChapterSpan:
    """Where a chapter sits in the book, in samples, and its chunks."""

    start: int
    end: int
    chunks: tuple[ChunkSpan, ...]


def stitch(
    chapters: Sequence[Sequence[ChunkAudio]], sample_rate: int, pauses: Pauses
) -> tuple[AudioArray, list[ChapterSpan]]:
    """One array for the whole book and the span of every chapter and chunk within it.

    Between chunks of a chapter: the paragraph pause before a chunk that opens a paragraph,
    else the sentence pause. Between chapters: the chapter pause. A chapter's span covers
    its first chunk's first sample to its last chunk's last sample.
    """

    def samples(ms: int) -> int:
        return round(sample_rate * ms / 1000)

    sentence, paragraph, chapter_gap = (
        samples(pauses.sentence_ms),
        samples(pauses.paragraph_ms),
        samples(pauses.chapter_ms),
    )
    layout: list[tuple[int, list[tuple[int, ChunkAudio]]]] = []
    cursor = 0
    for index, chunks in enumerate(chapters):
        if index:
            cursor += chapter_gap
        chapter_start = cursor
        placed: list[tuple[int, ChunkAudio]] = []
        for position, chunk in enumerate(chunks):
            if position:
                cursor += paragraph if chunk.paragraph_start else sentence
            placed.append((cursor, chunk))
            cursor += len(chunk.audio)
        layout.append((chapter_start, placed))

    book = np.zeros(cursor, np.float32)
    spans: list[ChapterSpan] = []
    for chapter_start, placed in layout:
        chunk_spans = []
        for offset, chunk in placed:
            book[offset : offset + len(chunk.audio)] = chunk.audio
            chunk_spans.append(
                ChunkSpan(
                    chunk.text, offset - chapter_start, offset - chapter_start + len(chunk.audio)
                )
            )
        end = chunk_spans[-1].end + chapter_start if chunk_spans else chapter_start
        spans.append(ChapterSpan(chapter_start, end, tuple(chunk_spans)))
    return book, spans
