"""The SNAC decoder interface and its runtime-independent half.

`SnacDecoder` is what the Maya1 engine uses; `BatchedSnacDecoder` does everything but the
decoder call itself (validation, grouping, padding, per-request noise, trimming, the muted
start-up frame and the fades), so the torch, onnxruntime and TensorRT runtimes only supply
`run_batch` for one padded call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pipeline.engines.failures import as_engine_error
from pipeline.engines.maya1.snac.frames import (
    DEFAULT_BATCH_FRAMES,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    Audio,
    Frames,
    check_frames,
    decode_groups,
    pad_frames,
)
from pipeline.engines.maya1.snac.noise import batch_noise

# The decoder's first frame is warm-up: its convolutions start on zero padding, and the
# Maya1 reference drops those 2048 samples. We keep every frame, so that a request's audio
# is exactly n * 2048 samples (timelines and tests rely on it), and mute the first frame
# instead: the same silence-for-artefact trade, without shifting the speech in time.
STARTUP_SAMPLES = SAMPLES_PER_FRAME
FADE_SAMPLES = 120  # 5 ms raised-cosine ramps at both edges: joins between chunks do not click


@runtime_checkable
class SnacDecoder(Protocol):
    """Turns Maya1 frames into audio; one instance per process, reused for every batch."""

    sample_rate: int  # 24000

    def decode(
        self, frames: Sequence[Frames], seeds: Sequence[int]
    ) -> list[npt.NDArray[np.float32]]:
        """frames[i]: int64 array (n_i, 7) of codes 0..4095 in Maya1 slot order (slot 0 ->
        level 1; slots 1,4 -> level 2; slots 2,3,5,6 -> level 3). Returns float32 mono audio
        per request, exactly n_i * 2048 samples, start-up artefact removed and edges faded.
        Batched across requests (pad to the longest, trim each); noise seeded per request
        so a request's audio does not depend on its batch-mates."""
        ...


def finish_audio(audio: npt.NDArray[np.floating]) -> Audio:
    """A float32 copy with the start-up frame muted and both edges faded (see STARTUP_SAMPLES)."""
    out = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    out[: min(STARTUP_SAMPLES, len(out))] = 0.0
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, FADE_SAMPLES))).astype(np.float32)
    start = min(STARTUP_SAMPLES, len(out))
    span = min(FADE_SAMPLES, len(out) - start)
    if span:
        out[start : start + span] *= ramp[:span]
        out[len(out) - span :] *= ramp[:span][::-1]
    return out


class BatchedSnacDecoder:
    """The runtime-independent half of a SnacDecoder: validation, grouping into bounded
    calls, padding, per-request noise, trimming, then mute + fades. A runtime (torch,
    onnxruntime, TensorRT) supplies `run_batch` for one padded call, and `noise_factors`."""

    sample_rate = SAMPLE_RATE
    noise: bool = True
    noise_factors: Sequence[int] = ()
    max_batch_frames: int = DEFAULT_BATCH_FRAMES
    max_batch_size: int | None = None

    def run_batch(
        self,
        padded: Frames,
        lengths: Frames,
        noise: list[npt.NDArray[np.float32]] | None,
    ) -> npt.NDArray[np.floating]:
        """One decoder call: padded (B, n, 7) codes, (B,) lengths, the noise inputs from
        `batch_noise` or None for noise off -> audio (B, n * 2048)."""
        raise NotImplementedError

    def decode(self, frames: Sequence[Frames], seeds: Sequence[int]) -> list[Audio]:
        """See SnacDecoder.decode."""
        return [finish_audio(audio) for audio in self.decode_raw(frames, seeds)]

    def decode_raw(self, frames: Sequence[Frames], seeds: Sequence[int] | None) -> list[Audio]:
        """Decoder output per request, n_i * 2048 samples, not yet muted or faded;
        `seeds=None` decodes without the decoder's noise (how exports are compared)."""
        checked = check_frames(frames, seeds if seeds is not None else [0] * len(frames))
        results: list[Audio] = [np.zeros(0, np.float32)] * len(checked)
        lengths = [len(item) for item in checked]
        for group in decode_groups(lengths, self.max_batch_frames, self.max_batch_size):
            padded, group_lengths = pad_frames([checked[index] for index in group])
            noise = None
            if seeds is not None and self.noise:
                noise = batch_noise(
                    [seeds[index] for index in group],
                    group_lengths.tolist(),
                    padded.shape[1],
                    self.noise_factors,
                )
            try:
                raw = self.run_batch(padded, group_lengths, noise)
            except Exception as exc:
                # out of memory takes the same halving path as the LLM's (EngineOutOfMemory);
                # a sticky device error is EngineBroken: see engines.failures
                error = as_engine_error(exc)
                if error is exc:
                    raise
                raise error from exc
            audio = np.asarray(raw, dtype=np.float32)
            for row, index in enumerate(group):
                results[index] = audio[row, : lengths[index] * SAMPLES_PER_FRAME].copy()
        return results
