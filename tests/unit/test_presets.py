"""Loudness presets rendered and read back, and `voicebatch check` on passing and failing files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipeline.audio.encode import decode, encode
from pipeline.audio.measure import check, measure_file
from pipeline.audio.presets import PRESETS, mastering_options
from pipeline.audio.probe import probe
from pipeline.config import load_settings
from pipeline.errors import InputError
from pipeline.runner import LocalRuntime
from tests.support.rendering import render

SR = 22050


def speech_book(tmp_path: Path) -> Path:
    """Long enough to measure (LUFS needs 0.4 s blocks, LRA 3 s windows)."""
    paragraphs = [
        f"Paragraph {n} tells a story with several words in it. It goes on a little, then stops."
        for n in range(8)
    ]
    path = tmp_path / "spoken.md"
    path.write_text(
        "# Spoken\n\n## One\n\n"
        + "\n\n".join(paragraphs[:4])
        + "\n\n## Two\n\n"
        + "\n\n".join(paragraphs[4:])
        + "\n"
    )
    return path


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
def test_acx_preset_files_pass_acx(runtime: LocalRuntime, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    manifest = render(runtime, speech_book(tmp_path), out, output_format=fmt, loudness_preset="acx")
    assert manifest["loudness"]["preset"] == "acx" and manifest["loudness"]["measure"] == "rms"
    for name in [manifest["file"], *(c["file"] for c in manifest["chapters"])]:
        measured = measure_file(out / name)
        assert abs(measured.rms_db - -20.0) <= 0.5, name
        assert measured.sample_peak_db <= -3.0
        assert -75.0 < measured.noise_floor_db <= -60.0  # room tone, not digital silence
        assert not measured.digital_silence
        assert 0.5 <= measured.head_seconds <= 1.0 and 1.0 <= measured.tail_seconds <= 5.0
        verdicts = {c.name: c.verdict for c in check(measured, PRESETS["acx"], probe(out / name))}
        # ACX's delivery format: MP3 at 192 kbit/s, 44.1 kHz (a WAV is only a warning).
        assert verdicts.pop("delivery format") == ("pass" if fmt == "mp3" else "warn")
        assert set(verdicts.values()) == {"pass"}, (name, verdicts)
    if fmt == "mp3":
        assert manifest["file_sample_rate"] == 44100 and manifest["sample_rate"] == SR
        info = probe(out / manifest["file"])
        assert info.sample_rate == 44100 and info.bit_rate is not None
        assert info.bit_rate >= 190_000


@pytest.mark.parametrize(("name", "target"), [("podcast", -16.0), ("broadcast", -23.0)])
def test_lufs_presets_hit_their_target_and_hold_the_peak(
    runtime: LocalRuntime, tmp_path: Path, name: str, target: float
) -> None:
    out = tmp_path / "out"
    manifest = render(
        runtime, speech_book(tmp_path), out, output_format="mp3", loudness_preset=name
    )
    for key in [c["file"] for c in manifest["chapters"]]:
        decoded = decode(out / key)
        # Measured independently of our meter: pyloudnorm on the decoded file.
        lufs = pyloudnorm.Meter(decoded.sample_rate).integrated_loudness(decoded.audio)
        assert abs(lufs - target) <= 0.5, key
        measured = measure_file(out / key)
        assert abs(measured.integrated_lufs - lufs) < 0.05
        assert measured.true_peak_dbtp <= -1.0
    if name == "broadcast":
        assert manifest["loudness"]["lra"] is not None


def test_a_preset_refuses_an_explicit_target() -> None:
    settings = load_settings(engine="test-tone", loudness_preset="podcast", loudness_lufs=-20)
    with pytest.raises(InputError, match="cannot be combined with the podcast"):
        mastering_options(settings)
    # Its defaults give way to the user's settings.
    mine = load_settings(engine="test-tone", loudness_preset="acx", head_silence_ms=900)
    assert mastering_options(mine)["head_silence_ms"] == 900
    assert mastering_options(mine)["tail_silence_ms"] == 2000


def test_meter_agrees_with_pyloudnorm_on_stereo_files(tmp_path: Path) -> None:
    t = np.arange(SR * 6) / SR
    left = 0.2 * np.sin(2 * np.pi * 440 * t) * (t > 1)
    right = 0.1 * np.sin(2 * np.pi * 660 * t)
    stereo = np.stack([left, right], axis=1).astype(np.float32)
    import wave

    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SR)
        out.writeframes((stereo * 32767).astype("<i2").tobytes())
    measured = measure_file(path)
    reference = pyloudnorm.Meter(SR).integrated_loudness(stereo.astype(np.float64))
    assert measured.channels == 2
    assert abs(measured.integrated_lufs - reference) < 0.05
    assert abs(measured.sample_peak_db - 20 * np.log10(0.2)) < 0.01


def _write(tmp_path: Path, name: str, audio: np.ndarray, fmt: str = "wav") -> Path:
    path = tmp_path / name
    path.write_bytes(encode(audio.astype(np.float32), SR, fmt))
    return path


def test_check_command_passes_and_fails_with_a_table_and_json(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = render(
        runtime, speech_book(tmp_path), out, output_format="mp3", loudness_preset="acx"
    )
    runner = CliRunner()
    good = runner.invoke(
        app, ["check", str(out / manifest["chapters"][0]["file"]), "--preset", "acx"]
    )
    assert good.exit_code == 0, good.output
    assert "RMS level" in good.output and "passes acx" in good.output
    # Too loud, peaks at full scale, no room tone at the head: fails those three.
    t = np.arange(SR * 4) / SR
    loud = _write(tmp_path, "loud.wav", 0.99 * np.sin(2 * np.pi * 300 * t))
    bad = runner.invoke(app, ["check", str(loud), "--preset", "acx", "--json"])
    assert bad.exit_code == 1
    result = json.loads(bad.output)
    verdicts = {c["name"]: c["verdict"] for c in result["criteria"]}
    assert not result["passed"]
    assert verdicts["RMS level"] == "fail" and verdicts["peak"] == "fail"
    assert verdicts["room tone at head"] == "fail"
    quiet = runner.invoke(app, ["check", str(loud), "--preset", "podcast"])
    assert quiet.exit_code == 1 and "integrated loudness" in quiet.output
    missing = runner.invoke(app, ["check", str(tmp_path / "nope.mp3")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    text = tmp_path / "notes.mp3"
    text.write_text("not audio")
    broken = runner.invoke(app, ["check", str(text)])
    assert broken.exit_code == 2 and "cannot be decoded" in broken.output
    unknown = runner.invoke(app, ["check", str(loud), "--preset", "radio"])
    assert unknown.exit_code == 2 and "unknown loudness preset" in unknown.output
