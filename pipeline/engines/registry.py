"""The engine registry: engines by name, what planning knows of each without loading it,
and `create_engine`, the only way the pipeline gets one. `pipeline.engines` re-exports
these names lazily (see its docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pipeline.engines.piper as piper
from pipeline.config import Settings
from pipeline.engines.base import Engine, SynthesisRequest, SynthesisResult
from pipeline.engines.maya1.checks import check_maya1_folders, maya1_info
from pipeline.engines.maya1.factory import load_maya1
from pipeline.engines.maya1.tokens import check_description
from pipeline.engines.testing import TestToneEngine
from pipeline.errors import InputError

__all__ = [
    "ENGINES",
    "Engine",
    "EngineInfo",
    "SynthesisRequest",
    "SynthesisResult",
    "create_engine",
    "engine_info",
    "engine_params",
    "takes_phonemes",
]


def _piper(settings: Settings) -> Engine:
    return piper.PiperEngine(voice=settings.voice)


def _test_tone(settings: Settings) -> Engine:
    return TestToneEngine(
        delay_seconds=settings.test_engine_delay_ms / 1000,
        crash_on=settings.test_engine_crash_on,
        journal=settings.test_engine_journal,
        break_after=settings.test_engine_break_after,
        pause_fifo=settings.test_engine_pause_fifo,
        pause_after=settings.test_engine_pause_after,
    )


def _maya1(settings: Settings) -> Engine:
    return load_maya1(settings)


ENGINES: dict[str, Callable[[Settings], Engine]] = {
    "maya1": _maya1,
    "piper": _piper,
    "test-tone": _test_tone,
}


def check_engine_name(name: str) -> None:
    """Raise InputError naming the known engines if `name` is not one."""
    if name not in ENGINES:
        raise InputError(f"unknown engine '{name}' (available: {', '.join(sorted(ENGINES))})")


def check_engine(settings: Settings) -> None:
    """The engine exists and its voice can be found; loads no model (milliseconds)."""
    check_engine_name(settings.engine)
    if settings.engine == "piper" and settings.voice:
        piper.voice_files(settings.voice)
    if settings.engine == "maya1":
        if settings.voice:
            check_description(settings.voice)
        check_maya1_folders(settings)


def check_voice(settings: Settings, voice: str) -> None:
    """A catalogue row's own voice can be found (piper: a voice file) or written into the
    prompt (maya1: a description in words); loads no model. test-tone takes any name."""
    if settings.engine == "piper":
        piper.voice_files(voice)
    if settings.engine == "maya1":
        check_description(voice)


@dataclass(frozen=True)
class EngineInfo:
    """What planning needs of an engine (the same attributes an Engine has), known
    without loading its model: the API plans jobs that GPU workers render."""

    name: str
    default_voice: str
    model_version: str
    max_chunk_chars: int
    takes_phonemes: bool = False


def engine_info(settings: Settings) -> EngineInfo:
    """The engine named in settings, described without loading it (milliseconds)."""
    check_engine(settings)
    if settings.engine == "piper":
        voice = settings.voice or piper.BUNDLED_VOICE
        return EngineInfo(
            "piper",
            voice,
            piper.model_version(voice),
            piper.PiperEngine.max_chunk_chars,
            takes_phonemes=True,
        )
    if settings.engine == "maya1":
        name, default_voice, version, max_chars = maya1_info(settings)
        return EngineInfo(name, settings.voice or default_voice, version, max_chars)
    return EngineInfo(
        TestToneEngine.name,
        TestToneEngine.default_voice,
        TestToneEngine.model_version,
        TestToneEngine.max_chunk_chars,
        takes_phonemes=TestToneEngine.takes_phonemes,
    )


def takes_phonemes(engine: Engine | EngineInfo) -> bool:
    """Whether the engine reads [[phonemes]] inline (an optional Engine attribute: engines
    that do not say so are taken to read text only)."""
    return bool(getattr(engine, "takes_phonemes", False))


def create_engine(settings: Settings) -> Engine:
    """Load the engine named in settings (once per process: callers keep the instance)."""
    check_engine_name(settings.engine)
    return ENGINES[settings.engine](settings)


def engine_params(settings: Settings) -> dict[str, str | int | float | bool]:
    """The settings that change an engine's audio, as stored with a job and hashed per chunk."""
    params: dict[str, str | int | float | bool] = {
        "speaking_rate": settings.speaking_rate,
        "sentence_pause_ms": settings.pause_sentence_ms,
    }
    if settings.engine == "maya1":
        # sampling changes maya1's audio, so it is part of every chunk's content hash
        params |= {
            "temperature": settings.maya1_temperature,
            "top_p": settings.maya1_top_p,
            "repetition_penalty": settings.maya1_repetition_penalty,
        }
    return params
