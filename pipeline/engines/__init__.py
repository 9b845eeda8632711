"""Engines by name. `create_engine` is the only way the pipeline gets one.

The registry (`registry`: ENGINES, EngineInfo, engine_info, create_engine, ...) imports the
settings (pydantic) and every engine. Its names are re-exported here, but imported on
first use: importing one engine's module (`pipeline.engines.maya1.engine`, which the GPU
benchmark runs on a machine without pydantic) runs this file and must not pull them in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.engines.base import Engine, SynthesisRequest, SynthesisResult
    from pipeline.engines.registry import (
        ENGINES,
        EngineInfo,
        check_engine,
        check_engine_name,
        check_voice,
        create_engine,
        engine_info,
        engine_params,
        takes_phonemes,
    )

__all__ = [
    "ENGINES",
    "Engine",
    "EngineInfo",
    "SynthesisRequest",
    "SynthesisResult",
    "check_engine",
    "check_engine_name",
    "check_voice",
    "create_engine",
    "engine_info",
    "engine_params",
    "takes_phonemes",
]

_BASE_NAMES = ("Engine", "SynthesisRequest", "SynthesisResult")


def __getattr__(name: str) -> Any:
    """The registry's (or base's) `name`, imported on first use (PEP 562)."""
    if name in __all__:
        module = "base" if name in _BASE_NAMES else "registry"
        value = getattr(importlib.import_module(f"pipeline.engines.{module}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pipeline.engines' has no attribute {name!r}")
