"""Settings validation and the engine registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_settings
from pipeline.engines import ENGINES, SynthesisRequest, create_engine, engine_params
from pipeline.engines.base import Engine
from pipeline.errors import InputError


def test_defaults_need_no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBATCH_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = load_settings()
    assert settings.engine == "piper" and settings.output_format == "mp3"
    assert settings.data_dir == tmp_path / "xdg" / "voicebatch"
    assert (
        settings.resolved_database_url
        == f"sqlite:///{tmp_path / 'xdg' / 'voicebatch' / 'voicebatch.db'}"
    )
    assert settings.resolved_storage_url == str(tmp_path / "xdg" / "voicebatch" / "objects")
    assert settings.loudness_lufs == -18.0 and settings.true_peak_dbtp == -1.0


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBATCH_OUTPUT_FORMAT", "flac")
    monkeypatch.setenv("VOICEBATCH_CHUNK_MAX_CHARS", "250")
    settings = load_settings(engine="TEST-TONE", output_format=None)
    assert (settings.output_format, settings.chunk_max_chars, settings.engine) == (
        "flac",
        250,
        "test-tone",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output_format": "aiff"}, "invalid setting output_format"),
        ({"chunk_max_chars": 5}, "invalid setting chunk_max_chars"),
        ({"storage_url": "s3://"}, "needs a bucket name"),
        ({"loudness_lufs": 3}, "invalid setting loudness_lufs"),
    ],
)
def test_invalid_settings_are_one_line_input_errors(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_settings(**overrides)
    assert "\n" not in str(info.value)


def test_unknown_engine_names_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"unknown engine 'nope' \(available: maya1, piper, test-tone\)"
    ):
        create_engine(load_settings(engine="nope", data_dir=tmp_path))


def test_registry_engines_satisfy_the_protocol(tmp_path: Path) -> None:
    engine = create_engine(load_settings(engine="test-tone", data_dir=tmp_path))
    assert isinstance(engine, Engine) and set(ENGINES) >= {"piper", "test-tone"}


def test_test_tone_engine_is_deterministic_and_length_follows_text(tmp_path: Path) -> None:
    settings = load_settings(engine="test-tone", data_dir=tmp_path)
    engine = create_engine(settings)
    params = engine_params(settings)
    short, long, again = engine.render_batch(
        [
            SynthesisRequest("Two words.", "tone", params),
            SynthesisRequest("Many more words make longer audio than two.", "tone", params),
            SynthesisRequest("Two words.", "tone", params),
        ]
    )
    np.testing.assert_array_equal(short.audio, again.audio)
    assert long.duration > 2 * short.duration and short.sample_rate == 22050


def test_speaking_rate_changes_engine_params(tmp_path: Path) -> None:
    slow = engine_params(load_settings(speaking_rate=0.8, data_dir=tmp_path))
    assert slow["speaking_rate"] == 0.8
