"""TestToneEngine: a deterministic stand-in for fast tests. It speaks no words.

Each word becomes a tone whose pitch comes from the word's hash and whose length grows
with the word, with short gaps between words and silence around the chunk (so trimming
has something to trim). Same request, same samples, on every machine. Never a default.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.engines.base import AudioArray, SynthesisRequest, SynthesisResult

# torch's own words for a sticky CUDA error (c10's CUDAException): the context is unusable
STICKY_CUDA_ERROR = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1"
)


class TestToneEngine:
    """Deterministic tones instead of speech, for tests and benchmarks of the pipeline."""

    __test__ = False  # not a pytest class
    name = "test-tone"
    model_version = "test-tone 1"
    sample_rate = 22050
    max_chunk_chars = 1000
    default_voice = "tone"
    takes_phonemes = False
    delay_seconds = 0.0
    crash_on: str | None = None
    break_after = 0
    renders = 0
    pause_fifo: Path | None = None  # class defaults: subclasses in tests skip __init__
    pause_after = 0

    journal: Path | None = None

    def __init__(
        self,
        *,
        delay_seconds: float = 0.0,
        crash_on: str | None = None,
        journal: Path | None = None,
        break_after: int = 0,
        pause_fifo: Path | None = None,
        pause_after: int = 0,
    ) -> None:
        # A pause per request lets fault-injection tests catch a batch mid-render; a
        # crash word kills the process the way a segfaulting model would; the journal
        # lets them count every render, finished or not. None changes the audio, so none
        # is part of any content hash.
        self.delay_seconds = delay_seconds
        self.crash_on = crash_on
        self.journal = journal
        # break_after > 0: after that many renders the engine fails every render the way
        # a GPU does after a sticky CUDA error (the process must be replaced)
        self.break_after = break_after
        self.renders = 0
        # pause_fifo: before render number pause_after + 1, wait until a test has opened
        # and closed the FIFO, so it can interrupt the render at a known point
        self.pause_fifo = pause_fifo
        self.pause_after = pause_after

    def _note(self, request: SynthesisRequest) -> None:
        """One line per render in the journal, `pid text-digest voice`; a single
        O_APPEND write, so lines from many processes never interleave."""
        if self.journal is None:
            return
        digest = hashlib.sha256(request.text.encode("utf-8")).hexdigest()[:16]
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            voice = " ".join(request.voice.split())
            os.write(fd, f"{os.getpid()} {digest} {voice}\n".encode())
        finally:
            os.close(fd)

    def _word(self, word: str, rate: float) -> AudioArray:
        digest = hashlib.sha256(word.encode("utf-8")).digest()
        freq = 180.0 + digest[0] * 2.0
        seconds = (0.06 + 0.045 * len(word)) / rate
        t = np.arange(int(self.sample_rate * seconds)) / self.sample_rate
        envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
        return (0.5 * envelope * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    def render_one(self, request: SynthesisRequest) -> SynthesisResult:
        self._note(request)
        if self.crash_on and self.crash_on in request.text.split():
            os._exit(70)  # no cleanup, no exception: the process is simply gone
        self.renders += 1
        if self.break_after and self.renders > self.break_after:
            raise RuntimeError(STICKY_CUDA_ERROR)
        if self.pause_fifo is not None and self.renders == self.pause_after + 1:
            with self.pause_fifo.open("rb") as fifo:  # blocks until the test opens it
                fifo.read()  # ... and until it closes it
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        rate = float(request.params.get("speaking_rate", 1.0))
        gap = np.zeros(int(self.sample_rate * 0.08 / rate), np.float32)
        edge = np.zeros(int(self.sample_rate * 0.2), np.float32)
        parts: list[AudioArray] = [edge]
        for word in request.text.split():
            parts += [self._word(word, rate), gap]
        parts.append(edge)
        return SynthesisResult(audio=np.concatenate(parts), sample_rate=self.sample_rate)

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        return [self.render_one(request) for request in requests]
