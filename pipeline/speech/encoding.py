"""Speech audio encoded as it arrives, sentence by sentence, into one continuous stream
of the response format (PyAV, with the codec settings of `audio.encode`).

Each format is a stream a player can start on before its end exists:
- mp3 (MPEG frames) and aac (ADTS frames) are sequences of self-framed packets;
- opus is Ogg, whose pages are flushed as each sentence's packets are muxed;
- flac is a FLAC stream whose header leaves the total length unknown (0), as FFmpeg
  writes it to a pipe;
- wav is a RIFF header whose sizes say "unknown" (0xFFFFFFFF, as OpenAI streams it),
  then 16-bit samples; pcm is the samples alone, 16-bit little-endian mono at 24 kHz
  (OpenAI's pcm).
The muxers write to a sink that cannot seek, so nothing is patched in at the end; the
bytes of each sentence are handed on as soon as it is encoded.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import av
import numpy as np
from av.audio.stream import AudioStream

from pipeline.audio.encode import CODECS

PCM_RATE = 24_000  # OpenAI's pcm: 24 kHz, 16-bit signed little-endian, mono
UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class SpeechFormat:
    container: str
    codec: str
    content_type: str
    kbps: int | None = None
    rate: int | None = None  # the encoder's only rate; None: the engine's
    options: dict[str, str] | None = None


FORMATS: dict[str, SpeechFormat] = {
    "mp3": SpeechFormat(
        "mp3", "libmp3lame", "audio/mpeg", 64, options=dict(CODECS["mp3"].options or {})
    ),
    "opus": SpeechFormat("ogg", "libopus", "audio/ogg", 48, rate=48_000),
    "aac": SpeechFormat("adts", "aac", "audio/aac", 64),
    "flac": SpeechFormat("flac", "flac", "audio/flac"),
    "wav": SpeechFormat("wav", "pcm_s16le", "audio/wav"),
    "pcm": SpeechFormat("s16le", "pcm_s16le", "audio/pcm", rate=PCM_RATE),
}


def content_type(fmt: str) -> str:
    return FORMATS[fmt].content_type


class _Sink(io.RawIOBase):
    """Where a muxer writes: collected until taken, never seekable."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def wav_stream_header(sample_rate: int) -> bytes:
    """A RIFF/WAVE header for 16-bit mono of unknown length."""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", UNKNOWN_SIZE)
    )


class SpeechEncoder:
    """`feed` each sentence's 16-bit PCM, get the response bytes it completes; `finish`
    gives the rest. The sample rate is the engine's, known from the first sentence."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        self.fmt = fmt
        self.spec = FORMATS[fmt]
        self.sample_rate = sample_rate
        self._started = False
        self._sink = _Sink()
        self._container: Any = None
        self._stream: AudioStream | None = None
        self._resampler: av.AudioResampler | None = None
        self._position = 0

    def _open(self) -> bytes:
        if self.fmt == "wav":
            return wav_stream_header(self.sample_rate)
        if self.fmt == "pcm":
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)
            return b""
        spec = self.spec
        options = {"flush_packets": "1"}
        if spec.container == "ogg":
            options["page_duration"] = "20000"  # µs: a page per packet, none held back
        self._container = av.open(self._sink, "w", format=spec.container, options=options)
        rate = spec.rate or self.sample_rate
        self._stream = cast(
            AudioStream,
            self._container.add_stream(spec.codec, rate=rate, options=dict(spec.options or {})),
        )
        self._stream.layout = "mono"
        if spec.kbps:
            self._stream.bit_rate = spec.kbps * 1000
        self._resampler = av.AudioResampler(
            format=self._stream.format.name,
            layout="mono",
            rate=rate,
            frame_size=self._stream.codec_context.frame_size or None,
        )
        return b""

    def feed(self, pcm: bytes) -> bytes:
        """The bytes that follow from one more piece of 16-bit mono PCM."""
        head = b""
        if not self._started:
            head, self._started = self._open(), True
        if self.fmt == "wav":
            return head + pcm
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples), format="s16", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        assert self._resampler is not None
        return head + self._encode(self._resampler.resample(frame))

    def _encode(self, frames: list[av.AudioFrame]) -> bytes:
        if self.fmt == "pcm":
            return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
        assert self._stream is not None
        for out in frames:
            out.pts = self._position
            out.time_base = Fraction(1, self._stream.rate)
            self._position += out.samples
            self._container.mux(self._stream.encode(out))
        return self._sink.take()

    def finish(self) -> bytes:
        """What the encoder still holds, and the container's end."""
        if not self._started:
            self.feed(np.zeros(self.sample_rate // 50, "<i2").tobytes())  # a silent instant
        if self.fmt == "wav":
            return b""
        assert self._resampler is not None
        tail = self._encode(self._resampler.resample(None))
        if self.fmt == "pcm":
            return tail
        assert self._stream is not None
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return tail + self._sink.take()
