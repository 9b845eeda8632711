"""The SNAC 24 kHz decoder: Maya1's frames of 7 codes -> 24 kHz mono audio, batched.

`SnacDecoder` is the interface the Maya1 engine uses; `load_snac_decoder(settings)` picks
the runtime (`VOICEBATCH_SNAC_RUNTIME`: torch, onnx or tensorrt). The torch decoder is
built offline from `snac_dir` (config.json + weights), never from the hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pipeline.config import Settings

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 2048  # 4 level-3 codes x 512x upsampling: 85.3 ms at 24 kHz
CODES_PER_FRAME = 7
CODEBOOK_SIZE = 4096

Frames = npt.NDArray[np.int64]


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


def load_snac_decoder(settings: Settings) -> SnacDecoder:
    """The decoder for `settings.snac_runtime` (torch, onnx or tensorrt) on `settings.device`,
    loaded from `settings.snac_dir` (torch) or the files exported under snac_export_dir.
    Raises InputError naming what is missing."""
    raise NotImplementedError("SNAC decoder: implementation follows in the next commit")
