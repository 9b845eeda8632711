"""The SNAC decoder on onnxruntime: an exported `snac_decoder.<precision>.onnx`
(snac.export, named in snac.artifacts) behind the same SnacDecoder interface as the torch
decoder.

Validation, grouping, padding, per-request noise, trimming, the muted start-up frame and
the fades are BatchedSnacDecoder's (snac.base), shared with the torch runtime; this
module only runs one padded call through an InferenceSession.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.engines.maya1.snac.artifacts import NOISE_FACTORS_KEY
from pipeline.engines.maya1.snac.base import BatchedSnacDecoder
from pipeline.engines.maya1.snac.frames import DEFAULT_BATCH_FRAMES, Frames
from pipeline.errors import InputError

Provider = str | tuple[str, dict[str, Any]]


def default_providers() -> list[Provider]:
    """CUDA when this onnxruntime build has it (onnxruntime-gpu), else the CPU."""
    return onnx_providers("auto")


def onnx_providers(device: str) -> list[Provider]:
    """The execution providers for a `settings.device`: 'cpu' -> the CPU; 'cuda[:N]' or
    'auto' -> CUDA (device N) when this onnxruntime build has it, else the CPU."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise InputError(
            "the onnx SNAC runtime needs onnxruntime: pip install onnxruntime "
            "(or onnxruntime-gpu on a CUDA machine)"
        ) from exc
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device.startswith("cuda") and not has_cuda:
        raise InputError(
            f"VOICEBATCH_DEVICE={device} but this onnxruntime has no CUDA provider: "
            "pip install onnxruntime-gpu"
        )
    if device == "cpu" or not has_cuda:
        return ["CPUExecutionProvider"]
    device_id = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


class OnnxSnacDecoder(BatchedSnacDecoder):
    """SNAC from an exported ONNX file on onnxruntime (CUDA EP when present, else CPU)."""

    def __init__(
        self,
        model_path: Path,
        *,
        providers: Sequence[Provider] | None = None,
        noise: bool = True,
        max_batch_frames: int = DEFAULT_BATCH_FRAMES,
        max_batch_size: int | None = None,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise InputError(
                "the onnx SNAC runtime needs onnxruntime: pip install onnxruntime "
                "(or onnxruntime-gpu on a CUDA machine)"
            ) from exc
        if not model_path.is_file():
            raise InputError(f"no exported SNAC decoder at {model_path}")
        self.model_path = model_path
        self.noise = noise
        self.max_batch_frames = max_batch_frames
        self.max_batch_size = max_batch_size
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: fp16/QDQ graphs log many benign notes
        try:
            self.session = onnxruntime.InferenceSession(
                str(model_path),
                sess_options=options,
                providers=list(providers or default_providers()),
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot load the SNAC decoder {model_path}: {message}") from exc
        factors = self.session.get_modelmeta().custom_metadata_map.get(NOISE_FACTORS_KEY)
        if not factors:
            raise InputError(
                f"{model_path} is not a voicebatch SNAC export (no {NOISE_FACTORS_KEY})"
            )
        self.noise_factors = [int(value) for value in factors.split(",")]
        self.providers: list[str] = self.session.get_providers()

    def run_batch(
        self,
        padded: Frames,
        lengths: Frames,
        noise: list[npt.NDArray[np.float32]] | None,
    ) -> npt.NDArray[np.floating]:
        """See BatchedSnacDecoder.run_batch; noise off feeds zeros (the graph always adds
        noise * linear(x), so zero noise is exactly the torch decoder without noise)."""
        if noise is None:
            batch, frames = padded.shape[:2]
            noise = [np.zeros((batch, 1, frames * f), np.float32) for f in self.noise_factors]
        feed: dict[str, Any] = {"frames": padded, "lengths": lengths}
        feed.update({f"noise{index}": array for index, array in enumerate(noise)})
        (audio,) = self.session.run(["audio"], feed)
        return np.asarray(audio)
