"""The book's timeline: where each chapter and chunk sits, with pauses between them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pauses:
    """Silence inserted between chunks, in milliseconds."""

    sentence_ms: int
    paragraph_ms: int
    chapter_ms: int
    head_ms: int = 0  # before a chapter's first chunk, inside the chapter (ACX room tone)
    tail_ms: int = 0  # after its last chunk


@dataclass(frozen=True)
class ChunkLength:
    """A rendered chunk as the layout needs it: its text, paragraph flag and length in samples."""

    text: str
    paragraph_start: bool
    samples: int


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


def layout(
    chapters: Sequence[Sequence[ChunkLength]],
    sample_rate: int,
    pauses: Pauses,
    *,
    align: int = 1,
) -> list[ChapterSpan]:
    """The place of every chapter and chunk in the book, from lengths alone (no audio).

    Between chunks of a chapter: the paragraph pause before a chunk that opens a paragraph,
    else the sentence pause. Between chapters: the chapter pause. A chapter's span covers
    its head silence, its chunks and its tail silence (both none by default); the book
    ends with the last chapter.

    `align` > 1 starts every chapter on a multiple of that many samples, lengthening the
    pause before it by less than `align`: an MP3 book built from its chapter files needs
    each chapter on a frame boundary (pipeline.audio.concat).
    """

    def samples(ms: int) -> int:
        return round(sample_rate * ms / 1000)

    sentence, paragraph, chapter_gap = (
        samples(pauses.sentence_ms),
        samples(pauses.paragraph_ms),
        samples(pauses.chapter_ms),
    )
    spans: list[ChapterSpan] = []
    cursor = 0
    for index, chunks in enumerate(chapters):
        if index:
            cursor += chapter_gap
            cursor = -(-cursor // align) * align
        start = cursor
        cursor += samples(pauses.head_ms)
        placed = []
        for position, chunk in enumerate(chunks):
            if position:
                cursor += paragraph if chunk.paragraph_start else sentence
            placed.append(ChunkSpan(chunk.text, cursor - start, cursor - start + chunk.samples))
            cursor += chunk.samples
        cursor += samples(pauses.tail_ms)
        spans.append(ChapterSpan(start, cursor, tuple(placed)))
    return spans
