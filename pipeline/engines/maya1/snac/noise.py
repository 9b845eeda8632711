"""The SNAC decoder's noise, drawn per request from its seed, the same for every runtime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def noise_seed(seed: int, block: int) -> list[int]:
    """The numpy seed of one request's noise at one noise block."""
    return [int(seed) % 2**64, block]


def batch_noise(
    seeds: Sequence[int], lengths: Sequence[int], n_max: int, factors: Sequence[int]
) -> list[npt.NDArray[np.float32]]:
    """The decoder's noise inputs for one padded batch: per noise block i an array
    (B, 1, n_max * factors[i]), row r drawn from seed r over its own length, zero past it.

    Drawn with numpy on the host, not torch on the device: every runtime (torch CPU or
    GPU, onnxruntime, TensorRT) then adds the same noise for a seed, so switching runtime
    does not change the audio, and a request's noise never depends on its batch-mates.
    It is small (3360 floats per frame for the 24 kHz model)."""
    arrays = []
    for block, factor in enumerate(factors):
        noise = np.zeros((len(seeds), 1, n_max * factor), dtype=np.float32)
        for row, (seed, length) in enumerate(zip(seeds, lengths, strict=True)):
            rng = np.random.default_rng(noise_seed(seed, block))
            noise[row, 0, : length * factor] = rng.standard_normal(length * factor, np.float32)
        arrays.append(noise)
    return arrays
