"""Maya1Engine: text + a voice description -> 24 kHz speech, in two stages the dynamic
batcher overlaps: LLM token generation (`generate_batch`) and SNAC decoding
(`decode_batch`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from pipeline.engines.base import ParamValue, SynthesisRequest, SynthesisResult
from pipeline.engines.maya1.sampling import RowSampling
from pipeline.engines.maya1.snac.frames import SAMPLE_RATE
from pipeline.engines.maya1.tokens import (
    expected_new_tokens,
    max_new_tokens,
    prompt_ids,
    request_seed,
    retry_seed,
)
from pipeline.engines.maya1.unpack import MalformedAudio, check_unpacked, unpack

if TYPE_CHECKING:
    # types only: the settings (pydantic) are read in `factory`; the GPU benchmark runs
    # this module on a machine without pydantic (bench/gpu-wheels.txt)
    from pipeline.config import Settings
    from pipeline.engines.maya1.backends.base import TokenBackend
    from pipeline.engines.maya1.snac.base import SnacDecoder

log = logging.getLogger(__name__)

# The voice description Maya1's model card uses: a request's voice is free text like this.
DEFAULT_VOICE = (
    "Realistic male voice in the 30s age with American accent. Normal pitch, warm timbre, "
    "conversational pacing."
)
# Maya1 was trained on clips of about 1-14 s; a chunk longer than that drifts and skips
# words, a shorter one costs more joins. 180 characters at a narrator's pace of 14 a second
# (tokens.TYPICAL_CHARS_PER_SECOND; Piper's bundled voice was measured at 18.6 a second on
# the bundled example, docs/benchmarks.md, and audiobook narration runs 14-15) is 12.9 s,
# plus the ~0.5 s of silence the model leads with: inside 14 s. Read as slowly as 10 a
# second it is 18 s plus a second, 1,558 tokens: still under the token cap (tokens.py).
MAX_CHUNK_CHARS = 180
SAMPLING_PARAMS = ("temperature", "top_p", "repetition_penalty")


class PromptTokenizer(Protocol):
    """The tokenizer methods the engine uses."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class Generated:
    """Stage one's output for one request: its frames and the seed that made them (the
    SNAC decoder's noise is seeded with it too)."""

    frames: npt.NDArray[np.int64]
    seed: int


@dataclass(frozen=True)
class SamplingDefaults:
    """Sampling parameters for requests whose params do not name them."""

    temperature: float = 0.4
    top_p: float = 0.9
    repetition_penalty: float = 1.1

    @classmethod
    def from_settings(cls, settings: Settings) -> SamplingDefaults:
        return cls(
            settings.maya1_temperature, settings.maya1_top_p, settings.maya1_repetition_penalty
        )

    def as_params(self) -> dict[str, ParamValue]:
        """The job parameters that carry these values (hashed into every chunk's key)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
        }


class Maya1Engine:
    """The Maya1 StagedEngine; build it with `factory.load_maya1(settings)`."""

    name = "maya1"
    sample_rate = SAMPLE_RATE
    max_chunk_chars = MAX_CHUNK_CHARS
    default_voice = DEFAULT_VOICE

    def __init__(
        self,
        *,
        backend: TokenBackend,
        tokenizer: PromptTokenizer,
        decoder: SnacDecoder,
        model_version: str,
        defaults: SamplingDefaults | None = None,
        max_malformed: float = 0.05,
        retries: int = 2,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.decoder = decoder
        self.model_version = model_version
        self.defaults = defaults or SamplingDefaults()
        self.max_malformed = max_malformed
        self.retries = retries

    def expected_tokens(self, request: SynthesisRequest) -> int:
        """The tokens this request usually takes (the batcher groups by it)."""
        return expected_new_tokens(request.text)

    def sampling(self, request: SynthesisRequest, attempt: int = 0) -> RowSampling:
        """How `request` samples on try `attempt` (0: its own seed; later: other seeds)."""
        params: Mapping[str, Any] = request.params
        return RowSampling(
            seed=retry_seed(request_seed(request), attempt),
            max_new_tokens=max_new_tokens(request.text),
            temperature=float(params.get("temperature", self.defaults.temperature)),
            top_p=float(params.get("top_p", self.defaults.top_p)),
            repetition_penalty=float(
                params.get("repetition_penalty", self.defaults.repetition_penalty)
            ),
        )

    def generate_batch(self, requests: Sequence[SynthesisRequest]) -> list[object]:
        """Frames per request (a `Generated`), or its MalformedAudio after every retry."""
        outcomes: list[object] = [None] * len(requests)
        errors: dict[int, MalformedAudio] = {}
        pending = list(range(len(requests)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            rows = [self.sampling(requests[index], attempt) for index in pending]
            prompts = [self._prompt(requests[index]) for index in pending]
            tokens = self.backend.generate(prompts, rows)
            again = []
            for index, row, row_tokens in zip(pending, rows, tokens, strict=True):
                try:
                    check_finished(row, row_tokens, label=_label(requests[index]))
                    unpacked = unpack(row_tokens)
                    check_unpacked(unpacked, self.max_malformed, label=_label(requests[index]))
                except MalformedAudio as exc:
                    errors[index] = exc
                    again.append(index)
                    continue
                outcomes[index] = Generated(unpacked.frames, row.seed)
            if again and attempt < self.retries:
                log.warning("maya1: generating %d chunk(s) again with other seeds", len(again))
            pending = again
        for index in pending:
            error = errors[index]
            outcomes[index] = type(error)(
                f"{error.message} on all {self.retries + 1} tries with different seeds"
            )
        return outcomes

    def decode_batch(
        self, requests: Sequence[SynthesisRequest], generated: Sequence[object]
    ) -> list[SynthesisResult]:
        """24 kHz audio per request from its frames, decoded in one batched SNAC call."""
        items = [_generated(item) for item in generated]
        audio = self.decoder.decode([item.frames for item in items], [item.seed for item in items])
        return [SynthesisResult(samples, SAMPLE_RATE) for samples in audio]

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        """Both stages at once; raises the first request's failure, if any."""
        generated = self.generate_batch(requests)
        for outcome in generated:
            if isinstance(outcome, BaseException):
                raise outcome
        return self.decode_batch(requests, generated)

    def _prompt(self, request: SynthesisRequest) -> list[int]:
        return prompt_ids(self.tokenizer, request.voice or self.default_voice, request.text)


class UnfinishedSpeech(MalformedAudio):
    """The model used every token a chunk allows without writing the stop token: its
    audio is cut off mid-speech (or never found its end), so it is not kept."""


def check_finished(row: RowSampling, tokens: Sequence[int], *, label: str) -> None:
    """Raise UnfinishedSpeech when a row ran into its token cap without the stop token.
    A backend returns the tokens before the stop token, so a row that stopped returned
    fewer than `max_new_tokens` (the stop itself took a step). A row forced to its length
    (min_new_tokens >= max_new_tokens: benchmarks) cannot stop and is complete at its cap."""
    if row.min_new_tokens >= row.max_new_tokens:
        return
    if len(tokens) >= row.max_new_tokens:
        raise UnfinishedSpeech(
            f"{label}: the model used all {row.max_new_tokens} tokens the chunk allows "
            "without ending its speech"
        )


def _generated(item: object) -> Generated:
    if not isinstance(item, Generated):
        raise TypeError(f"maya1 decode_batch got {type(item).__name__}, not stage-one frames")
    return item


def _label(request: SynthesisRequest) -> str:
    text = request.text if len(request.text) <= 40 else request.text[:37] + "..."
    return f"chunk {text!r}"
