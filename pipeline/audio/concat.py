"""An MP3 book built from its chapter files' frames, without encoding it again.

Each chapter file is a complete LAME encode: its first frame starts the bit reservoir
afresh, and its audio begins one fixed encoder-plus-decoder delay (1105 samples) after its
first frame. Laid end to end, with runs of silent frames between them, chapter files
therefore decode inside the book exactly as they decode alone, provided each chapter's
first frame sits at the book sample where its audio should start: the layout puts every
chapter start on a frame boundary (`pipeline.audio.stitch.layout(align=...)`), and the
book's own LAME tag trims the first chapter's delay and the last chapter's padding, as
an encode of the whole book would.

The book's samples equal the chapter files' samples, to the sample (tests hold this);
the only difference from encoding the whole book is where the encoder's frames fall.
Encoding is the costliest step of assembly after the engine, so this halves it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO

import av
import numpy as np

from pipeline.audio.encode import FileMeta, codec_for, describe, encode, mux_cover

# LAME's encoder delay (576) plus the decoder's (529): where an encode's audio starts,
# counted from its first frame. The same at every rate LAME writes.
CODEC_DELAY = 1105
# Fewest frames of silence that can stand between two chapter files (an encode of a few
# samples still takes three frames).
MIN_SILENT_FRAMES = 3


def frame_samples(sample_rate: int) -> int:
    """Samples per MP3 frame: 1152 for MPEG-1 (32 kHz and up), 576 for MPEG-2 and 2.5."""
    return 1152 if sample_rate >= 32000 else 576


def frames_for(samples: int, sample_rate: int) -> int:
    """How many frames LAME writes for `samples` samples (its final flush included)."""
    return (samples + CODEC_DELAY) // frame_samples(sample_rate) + 1


def fits_between(chapter_samples: int, gap_samples: int, sample_rate: int) -> bool:
    """Whether a chapter of `chapter_samples` and the silence after it fit in
    `gap_samples` more, leaving room for at least MIN_SILENT_FRAMES frames of silence."""
    frame = frame_samples(sample_rate)
    spare = chapter_samples + gap_samples - frames_for(chapter_samples, sample_rate) * frame
    return spare >= MIN_SILENT_FRAMES * frame


@dataclass(frozen=True)
class Silence:
    """`frames` MP3 frames of digital silence."""

    frames: int


class ConcatError(RuntimeError):
    """The chapter files do not line up as the layout said they would (a bug)."""


def _packets(data: bytes) -> tuple[Any, Any, Iterator[Any]]:
    container = av.open(io.BytesIO(data), "r")
    stream = container.streams.audio[0]
    return container, stream, (p for p in container.demux(stream) if p.size)


class _SilentFrames:
    """Runs of silent frames by length, each a complete encode of zeros (its first frame
    starts the bit reservoir afresh), made once per length."""

    def __init__(self, sample_rate: int, bitrate_kbps: int | None) -> None:
        self.rate, self.kbps = sample_rate, bitrate_kbps
        self.made: dict[int, bytes] = {}

    def encoded(self, frames: int) -> bytes:
        if frames not in self.made:
            frame = frame_samples(self.rate)
            # mid-frame, so the count does not hinge on the exact delay
            samples = (frames - 1) * frame - CODEC_DELAY + frame // 2
            data = encode(
                np.zeros(max(samples, 0), np.float32), self.rate, "mp3", bitrate_kbps=self.kbps
            )
            self.made[frames] = data
        return self.made[frames]


def concat_mp3(
    sink: BinaryIO,
    parts: Iterable[bytes | Silence],
    *,
    sample_rate: int,
    starts: list[int],
    meta: FileMeta,
    bitrate_kbps: int | None = None,
) -> None:
    """Write into `sink` an MP3 of the chapter files in `parts` (MP3 bytes), with runs of
    silence between them, tagged with `meta`. `starts` are the book samples where each
    chapter's audio starts (multiples of the frame size); a chapter whose first frame
    does not land on its start raises ConcatError."""
    frame = frame_samples(sample_rate)
    silent = _SilentFrames(sample_rate, bitrate_kbps)
    output = av.open(
        sink, "w", format="mp3", options=dict(codec_for("mp3").container_options or {})
    )
    stream: Any = None
    position = 0  # samples of frames written, from the book's first frame
    chapter = 0
    try:
        for part in parts:
            data = silent.encoded(part.frames) if isinstance(part, Silence) else part
            if not isinstance(part, Silence):
                if chapter >= len(starts) or position != starts[chapter]:
                    expected = starts[chapter] if chapter < len(starts) else None
                    raise ConcatError(f"chapter {chapter + 1} starts at {position}, not {expected}")
                chapter += 1
            container, source, packets = _packets(data)
            try:
                if stream is None:
                    stream = output.add_stream_from_template(source)
                    picture = describe(output, codec_for("mp3"), meta, sample_rate)
                    if picture is not None and meta.cover is not None:
                        mux_cover(output, picture, meta.cover)
                written = 0
                for packet in packets:
                    packet.stream = stream
                    packet.pts = packet.dts = position
                    packet.time_base = Fraction(1, sample_rate)
                    packet.duration = frame
                    output.mux(packet)
                    position += frame
                    written += 1
                if isinstance(part, Silence) and written != part.frames:
                    raise ConcatError(f"{written} frames of silence written, {part.frames} wanted")
            finally:
                container.close()
        if chapter != len(starts):
            raise ConcatError(f"{chapter} chapter files given, {len(starts)} starts")
    finally:
        output.close()
