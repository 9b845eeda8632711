"""The book's timeline as audio: every stretch (chunk, pause, head or tail silence) in
order, and its finished samples (mastered, with the room-tone bed of its place)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.assemble.chapters import AssembledChapter
from pipeline.assemble.chunk_audio import ChunkAudioCache
from pipeline.audio.master import Mastering, Segment
from pipeline.audio.roomtone import RoomTone
from pipeline.audio.stitch import ChapterSpan
from pipeline.engines.base import AudioArray
from pipeline.stages import stage


def timeline_segments(
    chapters: list[AssembledChapter], spans: list[ChapterSpan], cache: ChunkAudioCache, rate: int
) -> list[tuple[int | None, Segment]]:
    """Every stretch of the timeline in order, tagged with its chapter (None for the
    pauses between chapters)."""
    out: list[tuple[int | None, Segment]] = []
    cursor = 0
    for index, (chapter, span) in enumerate(zip(chapters, spans, strict=True)):
        if span.start > cursor:
            out.append((None, Segment(cursor, span.start - cursor)))  # the pause between chapters
            cursor = span.start
        for piece, chunk in zip(chapter.pieces, span.chunks, strict=True):
            at = span.start + chunk.start
            if at > cursor:
                out.append((index, Segment(cursor, at - cursor)))  # a pause inside the chapter
            out.append((index, cache.segment(at, piece, rate)))
            cursor = at + chunk.end - chunk.start
        if span.end > cursor:
            out.append((index, Segment(cursor, span.end - cursor)))  # the chapter's tail
            cursor = span.end
    return out


def mastered(segment: Segment, mastering: Mastering) -> AudioArray:
    if segment.load is None:
        return np.zeros(segment.length, np.float32)
    if mastering.limited:
        return mastering.apply(*segment.audio_and_peaks())
    return mastering.apply(segment.load())  # peaks only matter to the limiter


def finished(
    segment: Segment,
    mastering: Mastering | None,
    tone: RoomTone | None,
    chapter_start: int | None,
) -> AudioArray:
    """A segment's final samples: mastered, with the room-tone bed of its place in its
    chapter (so a chapter file and the book's stretch of it agree). `mastering` None is
    a pause between chapters (`chapter_start` None)."""
    with stage("master.apply"):
        if mastering is None:
            audio = np.zeros(segment.length, np.float32)
        else:
            audio = mastered(segment, mastering)
        if tone is None:
            return audio
        origin = segment.start if chapter_start is None else chapter_start
        return tone.add(audio, segment.start - origin)


def book_samples(
    chapters: list[AssembledChapter],
    segments: list[tuple[int | None, Segment]],
    spans: list[ChapterSpan],
    tone: RoomTone | None,
) -> Any:
    """The whole book's finished samples in order, each chapter as its own mastering
    left it, with (index, audio) so a caller can route chapters to their own files."""
    for index, segment in segments:
        if index is None:
            yield None, finished(segment, None, tone, None)
        else:
            yield index, finished(segment, chapters[index].mastering, tone, spans[index].start)
