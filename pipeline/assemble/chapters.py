"""What assembly works on and measures: a chapter (or item) with its chunks, mastering
and file, and the loudness a finished book measures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pipeline.assemble.chunk_audio import ChunkPiece
from pipeline.audio.master import Mastering


@dataclass(frozen=True)
class Loudness:
    """What the finished book measures: integrated loudness, the highest true peak, its
    plain RMS and its loudness range."""

    output_lufs: float
    true_peak_dbtp: float
    rms_db: float | None = None
    lra: float | None = None


@dataclass(frozen=True)
class AssembledChapter:
    """A chapter (or item) as assembly works on it: its chunks, mastering and file."""

    item_id: uuid.UUID
    title: str
    pieces: list[ChunkPiece]
    mastering: Mastering | None = None
    key: str | None = None
