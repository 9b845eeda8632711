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


class EngineStandIn:
    """What an engine that stands in for another (a batcher in front of it, its batch or
    speech side on a worker) says of itself: the other's name, model version, sample
    rate, limits and voice, so chunk hashes and plans do not see the difference."""

    def __init__(self, inner: Engine) -> None:
        self.name = inner.name
        self.model_version = inner.model_version
        self.sample_rate = inner.sample_rate
        self.max_chunk_chars = inner.max_chunk_chars
        self.default_voice = inner.default_voice
        self.takes_phonemes = bool(getattr(inner, "takes_phonemes", False))


@runtime_checkable
class StagedEngine(Engine, Protocol):
    """An engine whose batch runs in two stages, so the dynamic batcher can overlap the
    second stage of one batch (Maya1: SNAC decoding) with the first stage of the next
    (Maya1: LLM token generation).

    `render_batch(requests)` must equal `decode_batch(requests, generate_batch(requests))`.
    """

    def expected_tokens(self, request: SynthesisRequest) -> int:
        """How many tokens (steps) this request is expected to take: the batcher groups
        requests of similar length and keeps a batch under its token budget."""
        ...

    def generate_batch(self, requests: Sequence[SynthesisRequest]) -> list[object]:
        """Stage one: one opaque intermediate per request, in order (Maya1: SNAC frames).
        An element may be an Exception: that request failed alone, the others stand."""
        ...

    def decode_batch(
        self, requests: Sequence[SynthesisRequest], generated: Sequence[object]
    ) -> list[SynthesisResult]:
        """Stage two: audio for every request from its stage-one output."""
        ...


@runtime_checkable
class LowerableEngine(Engine, Protocol):
    """A CPU engine that renders one request per call and can split into a batch side
    rendering in lowered processes and a speech side in the caller's process: on a
    worker that answers speech, batch work cannot hold speech up (engines.priority)."""

    def split(self, niceness: int) -> tuple[Engine, Engine]:
        """(batch, speech): the same model and voice, batch rendering in other processes
        at nice `niceness`, speech in this one at the caller's priority."""
        ...
