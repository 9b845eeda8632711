"""Maya1 frames as every SNAC runtime takes them: the 24 kHz codec's constants, the array
types, and the validation, padding and grouping into bounded decoder calls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 2048  # 4 level-3 codes x 512x upsampling: 85.3 ms at 24 kHz
CODES_PER_FRAME = 7
CODEBOOK_SIZE = 4096
DEFAULT_BATCH_FRAMES = 4096  # most padded frames in one decoder call (bounds activation memory)

Frames = npt.NDArray[np.int64]
Audio = npt.NDArray[np.float32]


def check_frames(frames: Sequence[Frames], seeds: Sequence[int]) -> list[Frames]:
    """The frames as int64 (n, 7) arrays of codes 0..4095, one seed each; else ValueError."""
    if len(frames) != len(seeds):
        raise ValueError(f"SNAC decode got {len(frames)} requests but {len(seeds)} seeds")
    checked = []
    for index, item in enumerate(frames):
        array = np.asarray(item)
        if array.ndim != 2 or array.shape[1] != CODES_PER_FRAME or array.shape[0] == 0:
            raise ValueError(f"SNAC request {index}: frames must be (n >= 1, 7), got {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"SNAC request {index}: codes must be integers, got {array.dtype}")
        if array.min() < 0 or array.max() >= CODEBOOK_SIZE:
            raise ValueError(f"SNAC request {index}: codes must lie in 0..{CODEBOOK_SIZE - 1}")
        checked.append(array.astype(np.int64, copy=False))
    return checked


def pad_frames(frames: Sequence[Frames]) -> tuple[Frames, Frames]:
    """Stack requests padded (code 0) to the longest: (B, n_max, 7) codes and (B,) lengths."""
    lengths = np.array([len(item) for item in frames], dtype=np.int64)
    padded = np.zeros((len(frames), int(lengths.max()), CODES_PER_FRAME), dtype=np.int64)
    for row, item in enumerate(frames):
        padded[row, : len(item)] = item
    return padded, lengths


def decode_groups(
    lengths: Sequence[int], max_frames: int, max_batch: int | None = None
) -> list[list[int]]:
    """Request indices in decoder calls: sorted by length so padding stays small, each call
    at most `max_frames` padded frames (one request alone may exceed it) and at most
    `max_batch` requests (a TensorRT engine's profile bounds its batch)."""
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    groups: list[list[int]] = []
    for index in order:
        fits = max_batch is None or len(groups[-1] if groups else []) < max_batch
        if groups and fits and (len(groups[-1]) + 1) * lengths[index] <= max_frames:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups
