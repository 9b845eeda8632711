"""The Engine protocol: render a batch of requests into mono float32 audio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

ParamValue = str | int | float | bool
AudioArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SynthesisRequest:
    """One chunk to speak. `params` are engine parameters that change the audio."""

    text: str
    voice: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True)
class SynthesisResult:
    """Mono audio in [-1, 1] at `sample_rate`."""

    audio: AudioArray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


@runtime_checkable
class Engine(Protocol):
    """A speech engine. Implementations load their model once and are reused."""

    name: str
    model_version: str  # part of every chunk's content hash: a new model means new audio
    sample_rate: int
    max_chunk_chars: int
    default_voice: str

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        """Render every request, in order. Raises if any request cannot be rendered."""
        ...


def request_params(engine_params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    """Parameters in a stable order, as stored with a job and hashed into chunk keys."""
    return {key: engine_params[key] for key in sorted(engine_params)}
