"""Per-chunk post-processing: silence trimming, chunk WAV encoding, peak measurement."""

from __future__ import annotations

import io
import wave

import numpy as np

from pipeline.audio.master import oversampled_peaks
from pipeline.engines.base import AudioArray
from pipeline.errors import PermanentError


def trim_silence(
    audio: AudioArray,
    sample_rate: int,
    *,
    threshold_db: float = -50.0,
    keep_ms: float = 40.0,
    fade_ms: float = 5.0,
) -> AudioArray:
    """Cut leading and trailing silence, keeping `keep_ms` around the speech, with short fades.

    Silence is any 10 ms frame whose RMS is below `threshold_db` relative to the chunk's
    loudest frame (and below -60 dBFS absolute), so quiet voices are not cut.
    """
    if audio.size == 0:
        return audio
    frame = max(1, sample_rate // 100)
    frames = len(audio) // frame
    if frames == 0:
        return audio
    rms = np.sqrt(
        np.mean(audio[: frames * frame].reshape(frames, frame).astype(np.float64) ** 2, axis=1)
    )
    peak = float(rms.max())
    if peak <= 1e-6:
        return np.zeros(0, np.float32)
    limit = peak * 10 ** (threshold_db / 20)
    if peak > 3e-3:
        limit = max(limit, 1e-3)  # -60 dBFS is silence whatever the chunk's level
    loud = np.flatnonzero(rms > limit)
    keep = int(sample_rate * keep_ms / 1000)
    start = max(0, loud[0] * frame - keep)
    end = min(len(audio), (loud[-1] + 1) * frame + keep)
    out = audio[start:end].astype(np.float32, copy=True)
    fade = min(len(out) // 2, int(sample_rate * fade_ms / 1000))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out


def to_wav_bytes(audio: AudioArray, sample_rate: int) -> bytes:
    """16-bit PCM WAV, the format chunk objects are stored in."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def from_wav_bytes(data: bytes) -> tuple[AudioArray, int]:
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise PermanentError("chunk audio must be mono 16-bit WAV")
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    except (wave.Error, EOFError) as exc:
        raise PermanentError(f"chunk audio is not a readable WAV: {exc}") from exc
    return (pcm.astype(np.float32) / 32767.0), rate


def true_peak(audio: AudioArray, sample_rate: int) -> float:
    """Peak of the signal oversampled 4x (the ITU-R BS.1770-4 true-peak method), linear."""
    return float(oversampled_peaks(audio).max()) if audio.size else 0.0


def db(value: float) -> float:
    return float(20 * np.log10(value)) if value > 0 else float("-inf")
