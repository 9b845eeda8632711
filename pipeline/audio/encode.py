"""Encode and decode audio with PyAV (FFmpeg): wav, flac, mp3, opus."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import av
import numpy as np
from av.audio.stream import AudioStream

from pipeline.engines.base import AudioArray
from pipeline.errors import InputError


@dataclass(frozen=True)
class Codec:
    container: str
    codec: str
    extension: str
    content_type: str
    default_kbps: int | None
    rates: tuple[int, ...] | None = None  # sample rates the encoder accepts; None = any
    options: Mapping[str, str] | None = None


CODECS: dict[str, Codec] = {
    "wav": Codec("wav", "pcm_s16le", "wav", "audio/wav", None),
    "flac": Codec("flac", "flac", "flac", "audio/flac", None),
    # LAME's -q 7 encodes ~1.7x faster than its default -q 3; at 64 kbit/s mono speech the
    # difference is below the coding noise (measured on the example: SNR 25.3 dB vs 24.7 dB,
    # 500 Hz band levels within 0.4 dB up to 8 kHz).
    "mp3": Codec("mp3", "libmp3lame", "mp3", "audio/mpeg", 64, options={"compression_level": "7"}),
    # Opus runs at 48 kHz inside and decoders give 48 kHz back whatever rate went in, so
    # encode at 48 kHz: the rate in the manifest is then the rate a player sees.
    "opus": Codec("ogg", "libopus", "opus", "audio/ogg", 48, rates=(48000,)),
}


def codec_for(fmt: str) -> Codec:
    try:
        return CODECS[fmt]
    except KeyError:
        raise InputError(
            f"unknown output format '{fmt}' (available: {', '.join(CODECS)})"
        ) from None


def output_rate(fmt: str, sample_rate: int) -> int:
    codec = codec_for(fmt)
    if codec.rates is None or sample_rate in codec.rates:
        return sample_rate
    return next((r for r in sorted(codec.rates) if r >= sample_rate), max(codec.rates))


class StreamEncoder:
    """Encode mono float audio fed in pieces into `sink` (a seekable binary file).

    Feeding the whole book chunk by chunk keeps memory at one chunk, however long the book.
    """

    def __init__(
        self,
        sink: BinaryIO,
        sample_rate: int,
        fmt: str,
        *,
        bitrate_kbps: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        codec = codec_for(fmt)
        self.sample_rate = sample_rate
        self.rate = output_rate(fmt, sample_rate)
        self.samples = 0
        self.container = av.open(sink, "w", format=codec.container)
        self.stream = cast(
            AudioStream,
            self.container.add_stream(
                codec.codec, rate=self.rate, options=dict(codec.options or {})
            ),
        )
        self.stream.layout = "mono"
        kbps = bitrate_kbps or codec.default_kbps
        if kbps:
            self.stream.bit_rate = kbps * 1000
        for key, value in (metadata or {}).items():
            if value:
                self.container.metadata[key] = value
        self.resampler = av.AudioResampler(
            format=self.stream.format.name,
            layout="mono",
            rate=self.rate,
            frame_size=self.stream.codec_context.frame_size or None,
        )

    def write(self, audio: AudioArray) -> None:
        step = 1 << 16
        for offset in range(0, len(audio), step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio[None, offset : offset + step], dtype=np.float32),
                format="flt",
                layout="mono",
            )
            frame.sample_rate = self.sample_rate
            for out in self.resampler.resample(frame):
                self.container.mux(self.stream.encode(out))
        self.samples += len(audio)

    def close(self) -> None:
        # FFmpeg's encoders fail on no input, and libopus writes an empty file for a few
        # samples: pad those cases with silence. Anything else keeps its exact length.
        minimum = self.sample_rate // 50 if self.stream.codec_context.name == "libopus" else 1
        if self.samples < minimum:
            self.write(np.zeros(minimum - self.samples, np.float32))
        for out in self.resampler.resample(None):
            self.container.mux(self.stream.encode(out))
        self.container.mux(self.stream.encode(None))
        self.container.close()


def encode(
    audio: AudioArray,
    sample_rate: int,
    fmt: str,
    *,
    bitrate_kbps: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """Encode mono float audio into a complete file of format `fmt`, returned as bytes."""
    buffer = io.BytesIO()
    encoder = StreamEncoder(buffer, sample_rate, fmt, bitrate_kbps=bitrate_kbps, metadata=metadata)
    encoder.write(audio)
    encoder.close()
    return buffer.getvalue()


@dataclass(frozen=True)
class DecodedAudio:
    audio: AudioArray
    sample_rate: int
    metadata: dict[str, str]

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def decode(source: Path | bytes) -> DecodedAudio:
    """Decode any audio file FFmpeg reads into mono float32 (channels averaged)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with av.open(handle, "r") as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
            parts = [
                f.to_ndarray()[0]
                for frame in container.decode(stream)
                for f in resampler.resample(frame)
            ]
            parts += [f.to_ndarray()[0] for f in resampler.resample(None)]
            meta = {**dict(container.metadata), **dict(stream.metadata)}
            rate = int(stream.rate)
    except (av.FFmpegError, IndexError) as exc:
        raise InputError(f"cannot decode audio: {exc}") from exc
    audio = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return DecodedAudio(audio, rate, meta)
