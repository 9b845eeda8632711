"""Loudness presets: the delivery specs of ACX (Audible), podcasts and EBU R128 broadcast.

A preset fixes what files are mastered to (integrated loudness, or RMS for ACX; the
peak ceiling) and supplies defaults for the room around the speech (silence at head and
tail, room tone) that the user may still change. `voicebatch check` measures a file
against the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.config import Settings
from pipeline.errors import InputError

Measure = Literal["lufs", "rms"]


@dataclass(frozen=True)
class LoudnessSpec:
    """What a preset demands of every file."""

    name: str
    description: str
    measure: Measure  # what mastering aims at: integrated LUFS (BS.1770) or plain RMS
    target: float  # LUFS or dBFS RMS
    tolerance: float  # how far from the target a file may measure (LU or dB)
    peak_limit: float  # dBFS (sample peak, ACX) or dBTP (true peak)
    peak_kind: Literal["sample", "true"]
    ceiling_dbtp: float  # the limiter's true-peak ceiling when mastering
    level_range: tuple[float, float] | None = None  # ACX's accepted RMS range
    noise_floor_max: float | None = None  # dBFS RMS of the quietest 500 ms
    head_seconds: tuple[float, float] | None = None  # room tone before the first word
    tail_seconds: tuple[float, float] | None = None  # and after the last
    report_lra: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)  # settings the user may override
    # The delivery format the spec asks for besides levels: (codec, min kbit/s, sample rate)
    delivery: tuple[str, int, int] | None = None


PRESETS: dict[str, LoudnessSpec] = {
    # ACX (Audible): every file RMS -23..-18 dB, peaks at or under -3 dB, noise floor at or
    # under -60 dB RMS, 0.5-1 s of room tone at the head and 1-5 s at the tail. Aim at the
    # middle of the RMS range. The limiter stops 0.5 dB short of -3 dB, room for the
    # overshoot of lossy encoding. Pauses get a room-tone bed at -66 dB RMS: under the
    # noise-floor limit, but not the digital silence ACX reviewers flag.
    "acx": LoudnessSpec(
        "acx",
        "ACX/Audible: RMS -23 to -18 dB, peak <= -3 dB, noise floor <= -60 dB, room tone",
        "rms",
        -20.0,
        0.5,
        -3.0,
        "sample",
        -3.5,
        level_range=(-23.0, -18.0),
        noise_floor_max=-60.0,
        head_seconds=(0.5, 1.0),
        tail_seconds=(1.0, 5.0),
        delivery=("mp3", 192, 44100),
        defaults={
            # ACX takes MP3 at 192 kbit/s or more, 44.1 kHz
            "bitrate_kbps": 192,
            "output_sample_rate": 44100,
            "head_silence_ms": 750,
            "tail_silence_ms": 2000,
            "room_tone_db": -66.0,
            "pause_chapter_ms": 0,  # the book's chapters already meet tail + head
        },
    ),
    "podcast": LoudnessSpec(
        "podcast",
        "Podcasts (Apple, Spotify): -16 LUFS integrated, true peak <= -1 dBTP",
        "lufs",
        -16.0,
        1.0,
        -1.0,
        "true",
        -1.0,
    ),
    "broadcast": LoudnessSpec(
        "broadcast",
        "EBU R128 broadcast: -23 LUFS integrated (+-0.5 LU), true peak <= -1 dBTP, LRA reported",
        "lufs",
        -23.0,
        0.5,
        -1.0,
        "true",
        -1.0,
        report_lra=True,
    ),
}


def preset(name: str) -> LoudnessSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(
            f"unknown loudness preset {name!r} (available: {', '.join(PRESETS)})"
        ) from None


def mastering_options(settings: Settings) -> dict[str, Any]:
    """The job options that decide mastering and the delivery rate and bitrate, with
    the preset applied.

    A preset's targets cannot be combined with an explicit loudness_lufs or
    true_peak_dbtp (the file would not meet the preset); its defaults give way to any
    setting the user gave.
    """
    given = settings.model_fields_set
    values: dict[str, Any] = {
        "loudness_preset": None,
        "loudness_measure": "lufs",
        "loudness_target": settings.loudness_lufs,
        "true_peak_dbtp": settings.true_peak_dbtp,
        "head_silence_ms": settings.head_silence_ms,
        "tail_silence_ms": settings.tail_silence_ms,
        "room_tone_db": settings.room_tone_db,
        "pause_chapter_ms": settings.pause_chapter_ms,
        "bitrate_kbps": settings.bitrate_kbps,
        "output_sample_rate": settings.output_sample_rate,
    }
    if settings.loudness_preset == "none":
        return values
    spec = preset(settings.loudness_preset)
    for name in ("loudness_lufs", "true_peak_dbtp"):
        if name in given:
            raise InputError(
                f"{name} (VOICEBATCH_{name.upper()}) cannot be combined with the "
                f"{spec.name} loudness preset, which sets the target itself"
            )
    values |= {
        "loudness_preset": spec.name,
        "loudness_measure": spec.measure,
        "loudness_target": spec.target,
        "true_peak_dbtp": spec.ceiling_dbtp,
    }
    for name, default in spec.defaults.items():
        if name not in given:
            values[name] = default
    return values
