"""Generated tokens -> SNAC frames, with slot validation.

Each frame is 7 tokens, token k of a frame in slot k's range (AUDIO_BASE + k*4096 ..).
A frame with a token outside its slot's range (or a trailing partial frame) is malformed:
it is counted and dropped, never folded into range with `% 4096`, which would turn a
model error into a wrong sound."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.engines.maya1.tokens import AUDIO_BASE, CODEBOOK, EOS_SPEECH, SLOTS
from pipeline.errors import PermanentError

log = logging.getLogger(__name__)

_OFFSETS = AUDIO_BASE + CODEBOOK * np.arange(SLOTS, dtype=np.int64)


class MalformedAudio(PermanentError):
    """The model wrote audio tokens that do not form valid SNAC frames."""


@dataclass(frozen=True)
class Unpacked:
    """A request's frames, (n, 7) int64 codes 0..4095 in slot order, and how many frames
    were malformed (dropped)."""

    frames: npt.NDArray[np.int64]
    malformed: int

    @property
    def total(self) -> int:
        return len(self.frames) + self.malformed

    @property
    def malformed_fraction(self) -> float:
        return self.malformed / self.total if self.total else 1.0


def unpack(tokens: Sequence[int]) -> Unpacked:
    """Frames from the tokens generated after SOS (up to EOS-of-speech, which ends them)."""
    ids = np.asarray(tokens, dtype=np.int64)
    stops = np.flatnonzero(ids == EOS_SPEECH)
    if stops.size:
        ids = ids[: stops[0]]
    whole = len(ids) // SLOTS
    partial = int(len(ids) % SLOTS != 0)
    codes = ids[: whole * SLOTS].reshape(whole, SLOTS) - _OFFSETS
    valid = ((codes >= 0) & (codes < CODEBOOK)).all(axis=1)
    return Unpacked(codes[valid].copy(), int(whole - valid.sum()) + partial)


def check_unpacked(unpacked: Unpacked, max_malformed: float, *, label: str) -> None:
    """Accept the frames with a warning when a few are malformed; raise MalformedAudio when
    none are usable or more than `max_malformed` (a fraction) of them are bad."""
    if len(unpacked.frames) == 0:
        raise MalformedAudio(f"{label}: the model produced no valid audio frame")
    if unpacked.malformed_fraction > max_malformed:
        raise MalformedAudio(
            f"{label}: {unpacked.malformed} of {unpacked.total} audio frames malformed "
            f"(more than {max_malformed:.0%})"
        )
    if unpacked.malformed:
        log.warning(
            "%s: dropped %d malformed of %d audio frames", label, unpacked.malformed, unpacked.total
        )
