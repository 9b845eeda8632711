"""Measuring any audio file against a loudness preset (`voicebatch check`).

The file is decoded once, block by block (PyAV), so a ten-hour book is measured in
constant memory: K-weighted power is summed per 100 ms step (BS.1770-4 blocks of four
steps give integrated loudness, windows of 30 steps the short-term loudness behind EBU
LRA), plain power per 10 ms frame (RMS, the quietest 500 ms as the noise floor, and the
room tone before the first and after the last word), and the peaks of each block and of
its 4x oversampling (true peak).
"""

from __future__ import annotations

from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt

from pipeline.audio.dsp import k_weighting, sosfilt, upsample4
from pipeline.audio.master import gated_loudness, loudness_range
from pipeline.audio.presets import LoudnessSpec
from pipeline.audio.probe import FileInfo
from pipeline.errors import InputError

FRAME_SECONDS = 0.01
FLOOR_FRAMES = 50  # 500 ms: the window ACX measures the noise floor over
SPEECH_MARGIN_DB = 20.0  # a frame this far over the floor, and over -50 dBFS, is speech
OVERLAP = 32  # samples carried between blocks so oversampling sees across their edges


@dataclass(frozen=True)
class Measurement:
    """What a file measures. Levels in dBFS (RMS: a full-scale sine is -3 dB), LUFS, LU."""

    duration: float
    sample_rate: int
    channels: int
    integrated_lufs: float
    lra: float | None
    rms_db: float
    sample_peak_db: float
    true_peak_dbtp: float
    noise_floor_db: float
    head_seconds: float  # before the first frame of speech
    tail_seconds: float  # after the last
    digital_silence: bool  # some 500 ms of exact zeros


def _db_power(power: float) -> float:
    return float(10 * np.log10(power)) if power > 0 else float("-inf")


def _db(value: float) -> float:
    return float(20 * np.log10(value)) if value > 0 else float("-inf")


class _Meter:
    def __init__(self, rate: int, channels: int) -> None:
        self.rate, self.channels = rate, channels
        self.sos = k_weighting(rate)
        self.state = np.zeros((len(self.sos), channels, 2))
        self.step = 0  # next 100 ms boundary, by index
        # array, not list: 8 bytes a value, so ten hours of 10 ms frames take 29 MB
        self.weighted = array("d")  # K-weighted energy per 100 ms step
        self.frames = array("d")  # plain mean square per 10 ms frame
        self.pending = np.zeros((channels, 0))  # samples not yet in a whole frame
        self.pending_k = np.zeros((channels, 0))
        self.position = 0
        self.squares = 0.0
        self.sample_peak = 0.0
        self.true_peak = 0.0
        self.carry = np.zeros((channels, 0))

    def boundary(self, index: int) -> int:
        return int(0.1 * index * self.rate)  # as pyloudnorm places its blocks

    def feed(self, block: npt.NDArray[np.float64]) -> None:
        if block.shape[1] == 0:
            return
        self.squares += float(np.sum(block * block))
        self.sample_peak = max(self.sample_peak, float(np.max(np.abs(block))))
        joined = np.concatenate([self.carry, block], axis=1)
        over = np.abs(upsample4(joined, axis=1))
        skip = 4 * self.carry.shape[1]
        if over.shape[1] > skip:
            self.true_peak = max(self.true_peak, float(np.max(over[:, skip:])))
        self.carry = joined[:, -OVERLAP:]
        weighted, self.state = sosfilt(self.sos, block, axis=1, zi=self.state)
        self.pending_k = np.concatenate([self.pending_k, weighted**2], axis=1)
        self.pending = np.concatenate([self.pending, block * block], axis=1)
        self.position += block.shape[1]
        start = self.position - self.pending_k.shape[1]
        while self.boundary(self.step + 1) <= self.position:
            cut = self.boundary(self.step + 1) - start
            self.weighted.append(float(np.sum(self.pending_k[:, :cut])))
            self.pending_k = self.pending_k[:, cut:]
            start += cut
            self.step += 1
        frame = max(1, int(self.rate * FRAME_SECONDS))
        whole = self.pending.shape[1] // frame
        if whole:
            power = self.pending[:, : whole * frame].reshape(self.channels, whole, frame)
            self.frames.extend(power.mean(axis=2).sum(axis=0) / self.channels)
            self.pending = self.pending[:, whole * frame :]

    def result(self) -> Measurement:
        rate, total = self.rate, self.position
        if total == 0:
            raise InputError("the file holds no audio")
        steps = np.frombuffer(self.weighted, dtype=np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(steps)])
        blocks = round((total / rate - 0.4) / 0.1) + 1 if total >= 0.4 * rate else 0
        blocks = min(blocks, len(steps) - 3) if len(steps) >= 4 else 0
        z = (
            (cumulative[4 : blocks + 4] - cumulative[:blocks]) / (0.4 * rate)
            if blocks > 0
            else np.zeros(0)
        )
        integrated = gated_loudness(z)
        short = (cumulative[30:] - cumulative[:-30]) / (3.0 * rate) if len(steps) > 30 else None
        frames = np.frombuffer(self.frames, dtype=np.float64) if self.frames else np.zeros(1)
        if len(frames) >= FLOOR_FRAMES:
            windows = np.convolve(frames, np.ones(FLOOR_FRAMES) / FLOOR_FRAMES, mode="valid")
            floor = _db_power(float(windows.min()))
            silent = bool(np.any(windows == 0.0))
        else:
            floor, silent = _db_power(float(frames.min())), bool(np.all(frames == 0.0))
        threshold_db = max(-50.0, (floor if np.isfinite(floor) else -90.0) + SPEECH_MARGIN_DB)
        speech = np.flatnonzero(frames > 10 ** (threshold_db / 10))
        if speech.size:
            head = speech[0] * FRAME_SECONDS
            tail = (len(frames) - 1 - speech[-1]) * FRAME_SECONDS
        else:
            head = tail = total / rate
        return Measurement(
            duration=total / rate,
            sample_rate=rate,
            channels=self.channels,
            integrated_lufs=integrated,
            lra=loudness_range(short) if short is not None and short.size else None,
            rms_db=_db_power(self.squares / (total * self.channels)),
            sample_peak_db=_db(self.sample_peak),
            true_peak_dbtp=_db(self.true_peak),
            noise_floor_db=floor,
            head_seconds=float(head),
            tail_seconds=float(tail),
            digital_silence=silent,
        )


def measure_file(path: Path) -> Measurement:
    """Decode `path` (any format FFmpeg reads) and measure it."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with av.open(str(path), "r") as container:
            if not container.streams.audio:
                raise InputError(f"{path}: has no audio stream")
            stream = container.streams.audio[0]
            channels = max(1, int(stream.channels))
            layout = "mono" if channels == 1 else "stereo"
            channels = min(channels, 2)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=stream.rate)
            meter = _Meter(int(stream.rate), channels)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    meter.feed(out.to_ndarray().astype(np.float64))
            for out in resampler.resample(None):
                meter.feed(out.to_ndarray().astype(np.float64))
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot be decoded as audio ({exc})") from exc
    return meter.result()


Verdict = Literal["pass", "fail", "warn", "info"]


@dataclass(frozen=True)
class Criterion:
    name: str
    requirement: str
    measured: str
    verdict: Verdict


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if not np.isfinite(value):
        return f"-inf {unit}"
    return f"{value:.1f} {unit}"


def check(
    measurement: Measurement, spec: LoudnessSpec, info: FileInfo | None = None
) -> list[Criterion]:
    """Each criterion of `spec`, with the measured value and pass/fail. With the file's
    `info`, the spec's delivery format too (a warning: voicebatch's own files are at the
    voice's rate, and ACX wants 44.1 kHz MP3)."""
    m = measurement
    out: list[Criterion] = []
    if spec.measure == "rms":
        low, high = spec.level_range or (spec.target - spec.tolerance, spec.target + spec.tolerance)
        ok = low <= m.rms_db <= high
        out.append(Criterion("RMS level", f"{low:g} to {high:g} dB", _fmt(m.rms_db, "dB"), _ok(ok)))
    else:
        ok = abs(m.integrated_lufs - spec.target) <= spec.tolerance
        out.append(
            Criterion(
                "integrated loudness",
                f"{spec.target:g} LUFS ± {spec.tolerance:g} LU",
                _fmt(m.integrated_lufs, "LUFS"),
                _ok(ok),
            )
        )
    if spec.peak_kind == "sample":
        ok = m.sample_peak_db <= spec.peak_limit
        out.append(
            Criterion("peak", f"<= {spec.peak_limit:g} dB", _fmt(m.sample_peak_db, "dB"), _ok(ok))
        )
    else:
        ok = m.true_peak_dbtp <= spec.peak_limit
        out.append(
            Criterion(
                "true peak", f"<= {spec.peak_limit:g} dBTP", _fmt(m.true_peak_dbtp, "dBTP"), _ok(ok)
            )
        )
    if spec.noise_floor_max is not None:
        ok = m.noise_floor_db <= spec.noise_floor_max
        out.append(
            Criterion(
                "noise floor",
                f"<= {spec.noise_floor_max:g} dB",
                _fmt(m.noise_floor_db, "dB"),
                _ok(ok),
            )
        )
        out.append(
            Criterion(
                "room tone (not digital silence)",
                "no 500 ms of exact zeros",
                "digital silence found" if m.digital_silence else "room tone",
                "warn" if m.digital_silence else "pass",
            )
        )
    for name, bounds, value in (
        ("room tone at head", spec.head_seconds, m.head_seconds),
        ("room tone at tail", spec.tail_seconds, m.tail_seconds),
    ):
        if bounds is not None:
            ok = bounds[0] <= value <= bounds[1]
            out.append(
                Criterion(name, f"{bounds[0]:g} to {bounds[1]:g} s", f"{value:.2f} s", _ok(ok))
            )
    if spec.delivery is not None and info is not None:
        codec, kbps, rate = spec.delivery
        got_kbps = round(info.bit_rate / 1000) if info.bit_rate else None
        ok = codec in info.codec and (got_kbps or 0) >= kbps and info.sample_rate == rate
        out.append(
            Criterion(
                "delivery format",
                f"{codec.upper()} >= {kbps} kbit/s, {rate} Hz",
                f"{info.codec} {got_kbps or '?'} kbit/s, {info.sample_rate} Hz",
                "pass" if ok else "warn",
            )
        )
    if spec.report_lra:
        out.append(Criterion("loudness range (LRA)", "reported", _fmt(m.lra, "LU"), "info"))
    return out


def _ok(ok: bool) -> Verdict:
    return "pass" if ok else "fail"


def report(
    measurement: Measurement, spec: LoudnessSpec, info: FileInfo | None = None
) -> dict[str, Any]:
    """The check as JSON-ready data (`voicebatch check --json`)."""
    criteria = check(measurement, spec, info)

    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not np.isfinite(value) else value

    return {
        "preset": spec.name,
        "passed": all(c.verdict != "fail" for c in criteria),
        "measurement": {k: clean(v) for k, v in asdict(measurement).items()},
        "criteria": [asdict(c) for c in criteria],
    }
