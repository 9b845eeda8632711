"""Engines by name. `create_engine` is the only way the pipeline gets one."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import Settings
from pipeline.engines.base import Engine, SynthesisRequest, SynthesisResult
from pipeline.errors import InputError

__all__ = [
    "ENGINES",
    "Engine",
    "SynthesisRequest",
    "SynthesisResult",
    "create_engine",
    "engine_params",
]


def _piper(settings: Settings) -> Engine:
    from pipeline.engines.piper import PiperEngine

    return PiperEngine(voice=settings.voice)


def _test_tone(settings: Settings) -> Engine:
    from pipeline.engines.testing import TestToneEngine

    return TestToneEngine()


ENGINES: dict[str, Callable[[Settings], Engine]] = {"piper": _piper, "test-tone": _test_tone}


def check_engine_name(name: str) -> None:
    """Raise InputError naming the known engines if `name` is not one."""
    if name not in ENGINES:
        raise InputError(f"unknown engine '{name}' (available: {', '.join(sorted(ENGINES))})")


def check_engine(settings: Settings) -> None:
    """The engine exists and its voice can be found; loads no model (milliseconds)."""
    check_engine_name(settings.engine)
    if settings.engine == "piper" and settings.voice:
        from pipeline.engines.piper import voice_files

        voice_files(settings.voice)


def create_engine(settings: Settings) -> Engine:
    """Load the engine named in settings (once per process: callers keep the instance)."""
    check_engine_name(settings.engine)
    return ENGINES[settings.engine](settings)


def engine_params(settings: Settings) -> dict[str, str | int | float | bool]:
    """The settings that change an engine's audio, as stored with a job and hashed per chunk."""
    return {
        "speaking_rate": settings.speaking_rate,
        "sentence_pause_ms": settings.pause_sentence_ms,
    }
