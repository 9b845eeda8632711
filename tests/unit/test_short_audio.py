"""Audio too short or too quiet for BS.1770's gates still gets a finite, defined loudness:
levels go into JSON (the manifest, the database), which has no infinities (issue 21.3)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.master import SILENCE_DB, LoudnessAccumulator, Segment, plan_mastering
from pipeline.runner import LocalRuntime
from pipeline.state.models import JobStatus
from tests.support.rendering import CountingEngine, run

SR = 22050


def strict(text: str) -> object:
    """json.loads that refuses NaN and infinities, as PostgreSQL's json type does."""

    def refuse(name: str) -> object:
        raise ValueError(f"non-finite number {name} in JSON")

    return json.loads(text, parse_constant=refuse)


def tone(seconds: float, level: float = 0.2) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def master(audio: np.ndarray):  # type: ignore[no-untyped-def]
    return plan_mastering(
        [Segment(0, len(audio), lambda: audio)], SR, target_lufs=-18.0, ceiling_dbtp=-1.0
    )


def test_a_clip_shorter_than_a_block_is_measured_over_its_length() -> None:
    short = master(tone(0.3))
    assert all(math.isfinite(v) for v in asdict(short).values() if isinstance(v, float))
    assert abs(short.output_lufs - (-18.0)) <= 0.2  # raised to the target like any item
    # the same tone measured the standard way, long enough for the gates
    meter = LoudnessAccumulator(SR, SR * 2)
    meter.feed(tone(2.0))
    assert abs(short.input_lufs - meter.integrated()) < 0.3
    json.dumps(asdict(short), allow_nan=False)


@pytest.mark.parametrize("audio", [np.zeros(SR // 4, np.float32), np.zeros(SR * 2, np.float32)])
def test_silence_has_finite_levels_and_is_not_raised(audio: np.ndarray) -> None:
    plan = master(audio)
    assert plan.gain == 1.0 and plan.input_lufs == SILENCE_DB and plan.true_peak_dbtp == SILENCE_DB
    json.dumps(asdict(plan), allow_nan=False)


def test_a_one_word_book_assembles_with_finite_loudness(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    source = tmp_path / "go.txt"
    source.write_text("Go!\n", encoding="utf-8")
    outcome = run(runtime, CountingEngine(), source, tmp_path / "out")
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    assert outcome.assembly.duration < 0.4  # shorter than one loudness block
    manifest = strict((tmp_path / "out" / "manifest.json").read_text())
    assert isinstance(manifest, dict)
    assert abs(manifest["loudness"]["integrated_lufs"] + 18.0) <= 0.5
    strict((tmp_path / "out" / "go.timings.json").read_text())


def test_duplicate_timing_kinds_in_a_job_are_written_once(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """A job recorded with a timing kind twice (an API request could record one) still
    finishes, with one file of that kind (issue 21.4)."""
    source = tmp_path / "book.md"
    source.write_text("# A\n\n## One\n\nHello there.\n\n## Two\n\nGoodbye now.\n", encoding="utf-8")
    # model_copy skips validation, as per-job overrides were applied
    runtime.settings = runtime.settings.model_copy(update={"subtitles": "vtt,vtt"})
    outcome = run(runtime, CountingEngine(), source, tmp_path / "out")
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    manifest = strict((tmp_path / "out" / "manifest.json").read_text())
    assert isinstance(manifest, dict)
    assert manifest["timings"] == {"vtt": "book.vtt"}
    assert (tmp_path / "out" / "book.vtt").read_text().startswith("WEBVTT")
