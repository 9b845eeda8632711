"""The SNAC decoder in PyTorch: the reference runtime, built offline from a SNAC folder
(config.json + weights, never the hub), and the module the ONNX export traces.

torch is optional (the `maya1` extra), so it is imported where a decoder is built or run,
never when this module is imported: planning Maya1 jobs needs no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pipeline.engines.maya1.snac.base import BatchedSnacDecoder
from pipeline.engines.maya1.snac.frames import DEFAULT_BATCH_FRAMES, Frames
from pipeline.errors import InputError

if TYPE_CHECKING:
    from pipeline.engines.maya1.snac.model import FramesDecoder


def load_frames_decoder(snac_dir: Path | None) -> FramesDecoder:
    """SNAC from `snac_dir` (offline) wrapped as a FramesDecoder, as loaded: fp32 on the CPU."""
    # lazy: snac.model imports torch at module level, and torch is optional
    from pipeline.engines.maya1.snac.model import FramesDecoder, load_snac

    return FramesDecoder(load_snac(snac_dir))


class TorchSnacDecoder(BatchedSnacDecoder):
    """SNAC in PyTorch: the reference runtime (and the one exports are checked against)."""

    def __init__(
        self,
        snac_dir: Path | None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        noise: bool = True,
        max_batch_frames: int = DEFAULT_BATCH_FRAMES,
    ) -> None:
        import torch

        self.device = device
        self.noise = noise
        self.max_batch_frames = max_batch_frames
        try:
            self.model = load_frames_decoder(snac_dir).to(
                device=device, dtype=getattr(torch, dtype)
            )
        except (RuntimeError, AssertionError) as exc:  # a device torch cannot use
            raise InputError(f"cannot put the SNAC decoder on device '{device}': {exc}") from exc
        self.model.eval()
        self.noise_factors = self.model.noise_factors

    def run_batch(
        self,
        padded: Frames,
        lengths: Frames,
        noise: list[npt.NDArray[np.float32]] | None,
    ) -> npt.NDArray[np.floating]:
        """See BatchedSnacDecoder.run_batch."""
        import torch

        inputs = [torch.from_numpy(array).to(self.device) for array in noise or []]
        with torch.inference_mode():
            audio = self.model(
                torch.from_numpy(padded).to(self.device),
                torch.from_numpy(lengths).to(self.device),
                *inputs,
            )
        return audio.float().cpu().numpy()
