"""Trim, stitch, loudness and encoding, measured on the samples they produce."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyloudnorm
import pytest

from pipeline.audio.encode import FileMeta, decode, encode
from pipeline.audio.master import Segment, integrated_loudness, normalize_loudness, plan_mastering
from pipeline.audio.process import from_wav_bytes, to_wav_bytes, trim_silence, true_peak
from pipeline.audio.stitch import ChunkLength, Pauses, layout

SR = 22050


def tone(seconds: float, amp: float = 0.3, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts with pauses and sparse full-scale plosive-like spikes: a high crest factor."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal(int(SR * seconds)).astype(np.float32) * 0.05
    audio *= (np.sin(2 * np.pi * 3 * np.arange(len(audio)) / SR) > 0).astype(np.float32)
    spikes = rng.choice(len(audio) - 50, size=int(seconds * 4), replace=False)
    for at in spikes:
        audio[at : at + 40] += np.hanning(40).astype(np.float32) * rng.choice([-1.0, 1.0])
    return (audio / np.max(np.abs(audio))).astype(np.float32)


def test_trim_removes_edge_silence_and_keeps_a_margin() -> None:
    audio = np.concatenate([np.zeros(SR), tone(1.0), np.zeros(SR // 2)])
    trimmed = trim_silence(audio, SR, keep_ms=40)
    assert abs(len(trimmed) / SR - 1.08) < 0.02
    assert trimmed[0] == 0.0 and trimmed[-1] == 0.0  # faded, no click at the edges


def test_trim_keeps_a_quiet_voice_and_empties_pure_silence() -> None:
    quiet = np.concatenate([np.zeros(SR), tone(0.5, amp=0.01), np.zeros(SR)])
    assert abs(len(trim_silence(quiet, SR)) / SR - 0.58) < 0.02
    assert trim_silence(np.zeros(SR, np.float32), SR).size == 0


def test_wav_roundtrip_is_16_bit_exact() -> None:
    audio = tone(0.25)
    back, rate = from_wav_bytes(to_wav_bytes(audio, SR))
    assert rate == SR and len(back) == len(audio)
    assert np.max(np.abs(back - audio)) < 1 / 32767 + 1e-6


def test_layout_places_pauses_by_kind() -> None:
    a, b, c, d = 11025, 5512, 6615, 4410
    pauses = Pauses(sentence_ms=100, paragraph_ms=500, chapter_ms=2000)
    spans = layout(
        [
            [ChunkLength("a", True, a), ChunkLength("b", False, b), ChunkLength("c", True, c)],
            [ChunkLength("d", True, d)],
        ],
        SR,
        pauses,
    )
    first, second = spans
    assert [(s.start, s.end) for s in first.chunks] == [
        (0, a),
        (a + SR // 10, a + SR // 10 + b),
        (a + SR // 10 + b + SR // 2, a + SR // 10 + b + SR // 2 + c),
    ]
    assert first.end == first.chunks[-1].end
    assert second.start == first.end + 2 * SR and second.end == second.start + d
    assert second.chunks[0].start == 0


def test_mastering_a_stream_equals_mastering_the_whole_array() -> None:
    parts = [speechlike(3.0, seed=s) for s in range(4)]
    gap = np.zeros(SR // 3, np.float32)
    whole = np.concatenate([parts[0], gap, parts[1], gap, parts[2], gap, parts[3]])
    segments, at = [], 0
    for index, part in enumerate(parts):
        if index:
            segments.append(Segment(at, len(gap)))
            at += len(gap)
        segments.append(Segment(at, len(part), lambda p=part: p))
        at += len(part)
    streamed = plan_mastering(segments, SR, target_lufs=-18.0, ceiling_dbtp=-1.0)
    _, whole_plan = normalize_loudness(whole, SR, target_lufs=-18.0, ceiling_dbtp=-1.0)
    assert abs(streamed.input_lufs - integrated_loudness(whole, SR)) < 1e-6
    assert abs(streamed.gain - whole_plan.gain) < 1e-6 and streamed.limited
    out = np.concatenate(
        [
            np.zeros(s.length, np.float32) if s.load is None else streamed.apply(s.load())
            for s in segments
        ]
    )
    measured = pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64))
    assert abs(measured + 18.0) <= 0.2 and abs(measured - streamed.output_lufs) < 0.01
    assert 20 * np.log10(true_peak(out, SR)) <= -1.0


def test_loudness_hits_target_and_true_peak_stays_under_ceiling() -> None:
    audio = speechlike(20.0)
    out, report = normalize_loudness(audio, SR, target_lufs=-18.0, ceiling_dbtp=-1.0)
    measured = pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64))
    assert abs(measured + 18.0) <= 0.5
    assert abs(report.output_lufs - measured) < 0.01
    assert 20 * np.log10(true_peak(out, SR)) <= -1.0
    assert report.limited  # full-scale peaks at -18 LUFS needed the limiter


def test_loudness_of_quiet_material_is_gain_only() -> None:
    audio = tone(5.0, amp=0.05)
    out, report = normalize_loudness(audio, SR, target_lufs=-23.0, ceiling_dbtp=-1.0)
    assert not report.limited
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64)) + 23.0) < 0.05
    np.testing.assert_allclose(
        out, audio * np.float32(10 ** (report.gain_db / 20)), rtol=1e-5, atol=1e-7
    )


def test_audio_too_short_for_the_gates_is_measured_whole_and_still_limited() -> None:
    click = np.zeros(SR // 10, np.float32)
    click[100] = 1.0
    out, report = normalize_loudness(click, SR, target_lufs=-18.0, ceiling_dbtp=-1.0)
    # 100 ms is shorter than one 400 ms block: measured over its length, so it has a
    # finite level and is raised towards the target, never past the ceiling
    assert np.isfinite(report.input_lufs) and report.gain_db > 0.0
    assert true_peak(out, SR) <= 10 ** (-1 / 20)


@pytest.mark.parametrize(
    ("fmt", "rate"), [("wav", SR), ("flac", SR), ("mp3", SR), ("opus", 48000), ("m4b", SR)]
)
def test_encode_decode_keeps_duration_and_tags(fmt: str, rate: int) -> None:
    audio = tone(2.0)
    decoded = decode(
        encode(audio, SR, fmt, meta=FileMeta({"title": "Chapter One", "artist": "Ann"}))
    )
    assert decoded.sample_rate == rate
    assert abs(decoded.duration - 2.0) < 0.03
    tags = {k.lower(): v for k, v in decoded.metadata.items()}
    assert tags["title"] == "Chapter One" and tags["artist"] == "Ann"
    # Not silent, and the same pitch came back: the spectrum peaks at 220 Hz.
    spectrum = np.abs(np.fft.rfft(decoded.audio))
    assert abs(np.argmax(spectrum) * decoded.sample_rate / len(decoded.audio) - 220) < 2


def test_lossless_formats_are_sample_exact() -> None:
    audio = tone(1.0)
    for fmt in ("wav", "flac"):
        np.testing.assert_allclose(decode(encode(audio, SR, fmt)).audio, audio, atol=1.5 / 32767)


@pytest.mark.parametrize("rate", [22050, 24000, 44100, 48000])
def test_vectorised_meter_agrees_with_pyloudnorm(rate: int) -> None:
    rng = np.random.default_rng(rate)
    signals = [
        speechlike(7.3, seed=1),
        (0.1 * rng.standard_normal(int(rate * 3.05))).astype(np.float32),
        np.concatenate(
            [np.zeros(rate), 0.3 * np.sin(np.arange(rate * 2) * 0.05), np.zeros(rate // 3)]
        ).astype(np.float32),
    ]
    for signal in signals:
        expected = pyloudnorm.Meter(rate).integrated_loudness(signal.astype(np.float64))
        assert abs(integrated_loudness(signal, rate) - expected) < 0.01
    assert integrated_loudness(np.zeros(rate // 4, np.float32), rate) == float("-inf")
    assert integrated_loudness(np.zeros(rate, np.float32), rate) == float("-inf")


@pytest.mark.parametrize("target", [-14.0, -12.0])
def test_heavy_limiting_still_reaches_the_loudness_target(target: float) -> None:
    rng = np.random.default_rng(7)
    audio = (rng.laplace(size=SR * 30) * 0.02).astype(np.float32)  # speech-like peaks
    audio *= 0.96 / np.max(np.abs(audio))
    out, plan = normalize_loudness(audio, SR, target_lufs=target, ceiling_dbtp=-1.0)
    measured = pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64))
    assert plan.limited and abs(measured - target) <= 0.2
    assert 20 * np.log10(true_peak(out, SR)) <= -1.0


def test_each_pass_reads_each_chunk_once_past_the_cache_budget() -> None:
    from pipeline.assemble.chunk_audio import ChunkAudioCache, ChunkPiece
    from pipeline.audio.stitch import ChunkLength

    class CountingStore:
        def __init__(self) -> None:
            self.keys: list[str] = []
            self.blob = to_wav_bytes(speechlike(1.0, seed=9), SR)

        def get(self, key: str) -> bytes:
            self.keys.append(key)
            return self.blob

    objects = CountingStore()
    with ChunkAudioCache(objects, budget_bytes=0) as cache:  # type: ignore[arg-type]
        samples = len(from_wav_bytes(objects.blob)[0])
        segments = [
            cache.segment(i * samples, ChunkPiece(i, f"k{i}", ChunkLength("t", True, samples)), SR)
            for i in range(4)
        ]
        plan = plan_mastering(segments, SR, target_lufs=-18.0, ceiling_dbtp=-1.0)
    keys = objects.keys
    assert plan.limited and len(keys) >= 8  # measured, then at least one limited pass
    passes = len(keys) // 4
    # once per chunk per pass (reads run ahead on threads, so their order within a pass varies)
    assert len(keys) == 4 * passes and Counter(keys) == dict.fromkeys(
        ["k0", "k1", "k2", "k3"], passes
    )
    for start in range(0, len(keys), 4):
        assert sorted(keys[start : start + 4]) == ["k0", "k1", "k2", "k3"]


def test_a_chapter_done_with_is_let_go_of() -> None:
    """Embedded assembly drops each chapter's audio once it is written: memory stays at
    a chapter or so, however long the book (issue 22)."""
    from pipeline.assemble.chunk_audio import ChunkAudioCache, ChunkPiece
    from pipeline.audio.stitch import ChunkLength

    class Store:
        blob = to_wav_bytes(speechlike(1.0, seed=3), SR)

        def get(self, key: str) -> bytes:
            return self.blob

    with ChunkAudioCache(Store()) as cache:  # type: ignore[arg-type]
        samples = len(from_wav_bytes(Store.blob)[0])
        segments = [
            cache.segment(i * samples, ChunkPiece(i, f"k{i}", ChunkLength("t", True, samples)), SR)
            for i in range(3)
        ]
        plan_mastering(segments, SR, target_lufs=-18.0, ceiling_dbtp=-1.0)
        assert cache.size > 0 and set(cache.kept) == {"k0", "k1", "k2"}
        cache.forget(["k0", "k1"])
        assert set(cache.kept) == {"k2"} and set(cache.peaks) <= {"k2"}
        cache.forget(["k2", "never-read"])
        assert cache.size == 0 and not cache.kept and not cache.peaks
