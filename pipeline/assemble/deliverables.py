"""What a job delivers besides its samples, read from the options it was planned with:
the format, lossless masters, chapter files, timing files, cover, tags, chapter marks,
and the mastering target. Both assembly paths (embedded and workers) ask here, so they
write the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.assemble.keys import master_key, timing_key
from pipeline.assemble.writer import Target
from pipeline.audio.concat import frame_samples
from pipeline.audio.cover import Cover, cover_from_option
from pipeline.audio.encode import ChapterMark, FileMeta
from pipeline.audio.roomtone import RoomTone
from pipeline.audio.stitch import ChapterSpan, ChunkSpan
from pipeline.audio.subtitles import TimedText, timing_files
from pipeline.stages import stage
from pipeline.storage.base import ObjectStore


@dataclass(frozen=True)
class MasteringTarget:
    """What every file is mastered to: a level in the measure's unit, and a ceiling."""

    measure: str  # "lufs" or "rms"
    level: float
    ceiling_dbtp: float
    preset: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MasteringTarget:
        # Jobs planned before presets existed recorded only loudness_lufs.
        level = options.get("loudness_target", options.get("loudness_lufs"))
        assert level is not None
        return cls(
            str(options.get("loudness_measure", "lufs")),
            float(level),
            float(options["true_peak_dbtp"]),
            options.get("loudness_preset"),
        )


@dataclass(frozen=True)
class Deliverables:
    fmt: str
    bitrate_kbps: int | None
    master_format: str | None
    chapter_files: bool
    timings: tuple[str, ...]
    cover: Cover | None
    room_tone_db: float | None
    target: MasteringTarget
    file_rate: int | None = None  # delivery files resampled to this (masters never are)

    @classmethod
    def of(cls, fmt: str, options: dict[str, Any], output_store: ObjectStore) -> Deliverables:
        """The job's deliverables; its cover is read back from its output folder."""
        cover_option = options.get("cover")
        cover = (
            cover_from_option(cover_option, output_store.get(cover_option["key"]))
            if cover_option
            else None
        )
        master = options.get("master_format")
        return cls(
            fmt=fmt,
            bitrate_kbps=options.get("bitrate_kbps"),
            master_format=None if master in (None, "none") else str(master),
            chapter_files=bool(options.get("chapter_files", True)),
            # each kind once, in order, whatever the record says (an older API let a
            # request name one twice)
            timings=tuple(dict.fromkeys(options.get("timings", ()))),
            cover=cover,
            room_tone_db=options.get("room_tone_db"),
            target=MasteringTarget.from_options(options),
            file_rate=options.get("output_sample_rate"),
        )

    def targets(self, key: str, meta: FileMeta) -> list[Target]:
        """The delivery file at `key` and, when asked for, its lossless master."""
        out = [Target(key, self.fmt, meta, self.bitrate_kbps, self.file_rate)]
        if self.master_format:
            out.append(Target(master_key(key, self.master_format), self.master_format, meta))
        return out

    def chapter_align(self, rate: int) -> int:
        """Samples every chapter start of the book is a multiple of: an MP3 frame when the
        book can be built from its chapter files (pipeline.audio.concat), else 1. Both
        modes lay books out with it, so their timelines agree."""
        if (
            self.fmt == "mp3"
            and self.chapter_files
            and self.room_tone_db is None  # pauses are digital silence
            and self.file_rate in (None, rate)
        ):
            return frame_samples(rate)
        return 1

    def room_tone(self, rate: int) -> RoomTone | None:
        return None if self.room_tone_db is None else RoomTone(self.room_tone_db, rate)

    def book_meta(self, title: str, author: str | None, marks: Sequence[ChapterMark]) -> FileMeta:
        tags = {
            "title": title,
            "album": title,
            "artist": author or "",
            "album_artist": author or "",
        }
        if self.fmt == "m4b":
            tags |= {"genre": "Audiobook", "media_type": "2"}  # stik 2: an audiobook
        return FileMeta(tags, self.cover, tuple(marks))

    def item_meta(
        self, title: str, book_title: str, author: str | None, track: str | None
    ) -> FileMeta:
        tags = {"title": title, "album": book_title, "artist": author or ""}
        if track:
            tags["track"] = track
        return FileMeta(tags, self.cover)

    def write_timings(
        self,
        output_store: ObjectStore,
        audio_key: str,
        chunks: Sequence[TimedText],
        rate: int,
        *,
        duration_samples: int,
        chapters: Sequence[dict[str, Any]] = (),
    ) -> dict[str, str]:
        """Write the timing files of one audio file; returns kind -> key."""
        with stage("timing_files"):
            files = timing_files(
                self.timings,
                chunks,
                rate,
                audio_key=audio_key,
                duration_samples=duration_samples,
                chapters=chapters,
            )
            written: dict[str, str] = {}
            for kind, (data, content_type) in files.items():
                key = timing_key(audio_key, kind)
                output_store.put(key, data, content_type=content_type)
                written[kind] = key
        return written


def chapter_marks(titles: Sequence[str], spans: Sequence[ChapterSpan]) -> list[ChapterMark]:
    """One mark per chapter at its exact first sample; each runs to the next one's start
    (the pause between chapters belongs to the chapter before it)."""
    marks = []
    for index, (title, span) in enumerate(zip(titles, spans, strict=True)):
        end = spans[index + 1].start if index + 1 < len(spans) else span.end
        marks.append(ChapterMark(title, span.start, end))
    return marks


def timed_chunks(
    chunks: Sequence[ChunkSpan], offset: int = 0, chapter: int | None = None
) -> list[TimedText]:
    return [TimedText(c.text, offset + c.start, offset + c.end, chapter) for c in chunks]
