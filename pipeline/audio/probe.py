"""What an audio file says about itself: format, rate, tags, chapter marks, cover."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from pathlib import Path

import av
from av.stream import Disposition

from pipeline.errors import InputError


@dataclass(frozen=True)
class ProbedChapter:
    title: str
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class FileInfo:
    container: str
    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None  # bits per second, when the file says
    duration: float | None
    tags: dict[str, str]
    chapters: tuple[ProbedChapter, ...]
    cover: bytes | None
    brand: str | None  # MP4's major brand ("M4B " for audiobooks)


def _comment_picture(value: str) -> bytes | None:
    """The image inside a METADATA_BLOCK_PICTURE comment (a base64 FLAC picture block)."""
    try:
        block = base64.b64decode(value)
        (mime_len,) = struct.unpack(">I", block[4:8])
        at = 8 + mime_len
        (desc_len,) = struct.unpack(">I", block[at : at + 4])
        at += 4 + desc_len + 16
        (size,) = struct.unpack(">I", block[at : at + 4])
        return block[at + 4 : at + 4 + size]
    except (ValueError, struct.error):
        return None


def probe(path: Path | str) -> FileInfo:
    """Read a file's header, chapters and cover (no audio is decoded)."""
    try:
        with av.open(str(path), "r") as container:
            audio = container.streams.audio[0]
            tags = {**dict(container.metadata), **dict(audio.metadata)}
            chapters = tuple(
                ProbedChapter(
                    str(ch["metadata"].get("title", "")),
                    float(ch["start"] * (ch["time_base"] or 0)),
                    float(ch["end"] * (ch["time_base"] or 0)),
                )
                for ch in container.chapters()
            )
            cover = None
            pictures = [s for s in container.streams if s.disposition & Disposition.attached_pic]
            if pictures:
                packet = next(container.demux(pictures[0]), None)
                cover = bytes(packet) if packet is not None else None
            elif "METADATA_BLOCK_PICTURE" in {k.upper() for k in tags}:
                key = next(k for k in tags if k.upper() == "METADATA_BLOCK_PICTURE")
                cover = _comment_picture(tags[key])
            duration = float(container.duration) / av.time_base if container.duration else None
            return FileInfo(
                container=container.format.name,
                codec=audio.codec_context.name,
                sample_rate=int(audio.rate),
                channels=int(audio.channels),
                bit_rate=int(audio.bit_rate) if audio.bit_rate else None,
                duration=duration,
                tags={k: v for k, v in tags.items() if k.upper() != "METADATA_BLOCK_PICTURE"},
                chapters=chapters,
                cover=cover,
                brand=tags.get("major_brand"),
            )
    except (av.FFmpegError, IndexError) as exc:
        raise InputError(f"{path}: cannot read as audio ({exc})") from exc
