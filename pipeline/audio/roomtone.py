"""Room tone: a quiet, steady noise bed laid under a file instead of digital silence.

Recorded audiobooks have the noise of the room under every pause; a file whose pauses
are exact zeros sounds gated and is flagged by ACX reviewers. The bed is the same noise
for the same position in a chapter on every machine (a fixed seed, a fixed table), so a
chapter file and its stretch of the book, or two copies of an assembly, agree to the
sample.
"""

from __future__ import annotations

import numpy as np

from pipeline.audio.dsp import lfilter
from pipeline.engines.base import AudioArray

TABLE_SAMPLES = 1 << 19  # 24 s at 22.05 kHz before the bed repeats, far below hearing
SEED = 20_260_601


class RoomTone:
    """Noise at `level_db` dBFS RMS, pink-ish (a gentle low-pass), read by position."""

    def __init__(self, level_db: float, sample_rate: int) -> None:
        white = np.random.default_rng(SEED).standard_normal(TABLE_SAMPLES)
        # One pole at ~1.5 kHz: air-conditioner hiss, not the harsh white of a noise gate.
        pole = float(np.exp(-2 * np.pi * 1500 / sample_rate))
        shaped = lfilter([1 - pole], [1, -pole], white)
        shaped -= shaped.mean()
        shaped *= 10 ** (level_db / 20) / np.sqrt(np.mean(shaped**2))
        self.table = shaped.astype(np.float32)
        self.level_db = level_db

    def at(self, offset: int, length: int) -> AudioArray:
        """`length` samples of the bed starting at sample `offset` of a chapter."""
        index = (np.arange(offset, offset + length) % TABLE_SAMPLES).astype(np.int64)
        return self.table[index]

    def add(self, audio: AudioArray, offset: int) -> AudioArray:
        return (audio + self.at(offset, len(audio))).astype(np.float32)
