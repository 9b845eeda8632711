"""The mastering filters: the same as pyloudnorm's and SciPy's, and SciPy out of start-up."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import sosfilt
from typer.testing import CliRunner

from cli.app import COMMANDS, app
from pipeline.audio.dsp import k_weighting
from pipeline.audio.master import LoudnessAccumulator


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
def test_k_weighting_is_pyloudnorms(rate: int) -> None:
    filters = pyloudnorm.Meter(rate)._filters.values()
    expected = np.array([np.concatenate([f.b / f.a[0], f.a / f.a[0]]) for f in filters])
    assert np.allclose(k_weighting(rate), expected, rtol=1e-12, atol=0)
    assert np.prod([f.passband_gain for f in filters]) == 1.0


def reference_totals(signal: np.ndarray, rate: int, bounds: np.ndarray) -> np.ndarray:
    """Cumulative K-weighted power at each bound, from one filter over the whole signal."""
    power = sosfilt(k_weighting(rate), signal.astype(np.float64)) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    return cumulative[bounds]


@pytest.mark.parametrize("rate", [22050, 48000])
def test_pieces_and_silences_add_up_to_the_whole(rate: int) -> None:
    rng = np.random.default_rng(7)
    pieces: list[np.ndarray | int] = []
    for _ in range(12):
        pieces.append(
            (rng.standard_normal(int(rng.integers(1, 3 * rate))) * 0.1).astype(np.float32)
        )
        pieces.append(int(rng.integers(0, 2 * rate)))  # silence, long and short
    whole = np.concatenate(
        [p if isinstance(p, np.ndarray) else np.zeros(p, np.float32) for p in pieces]
    )
    meter = LoudnessAccumulator(rate, len(whole))
    for piece in pieces:
        if isinstance(piece, np.ndarray):
            meter.feed(piece)
        else:
            meter.feed_silence(piece)
    assert meter.position == len(whole)
    expected = reference_totals(whole, rate, meter.bounds)
    # float32 filtering: within 1e-4 relative (4e-4 dB) of one float64 pass
    assert np.allclose(meter.totals, expected, rtol=1e-4, atol=1e-9)
    expected_lufs = pyloudnorm.Meter(rate).integrated_loudness(whole.astype(np.float64))
    assert abs(meter.integrated() - expected_lufs) < 0.01


def test_render_command_starts_without_scipy_or_the_database_layer() -> None:
    """SciPy's import (about 0.7 s) waits until audio exists, and SQLAlchemy's until the
    engine has started loading: the CLI and the render command load without either."""
    code = (
        "import sys, cli.app, cli.render; "
        "print(sorted(m for m in ('scipy', 'pyloudnorm', 'sqlalchemy', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_command_loads_when_asked_for_and_help_lists_them_in_order() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [
        line.split()[1]
        for line in result.output.splitlines()
        if line.startswith("│ ") and len(line.split()) > 1 and line.split()[1] in COMMANDS
    ]
    assert listed == list(COMMANDS)
    for group in ("db upgrade", "keys create", "storage lifecycle show", "engine export-snac"):
        assert CliRunner().invoke(app, [*group.split(), "--help"]).exit_code == 0, group
