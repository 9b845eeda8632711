"""The SNAC decoder in PyTorch: the reference runtime, built offline from a SNAC folder
(config.json + weights, never the hub), and the module the ONNX export traces.

torch is optional (the `maya1` extra), so it is imported where a decoder is built or run,
never when this module is imported: planning Maya1 jobs needs no torch.

On a GPU the decoder runs on a CUDA stream of its own. The dynamic batcher calls
`decode_batch` on one thread while the LLM generates on another; on the same (default)
stream their kernels would queue behind each other and only the Python work would
overlap. Inputs go up from pinned host memory and the audio comes back into a pinned
buffer, both asynchronous on the decoder's stream, and an event recorded after the copy
is what the host waits for: the LLM's stream never waits on SNAC, nor SNAC on it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipeline.engines.maya1.snac.base import BatchedSnacDecoder
from pipeline.engines.maya1.snac.frames import DEFAULT_BATCH_FRAMES, Frames
from pipeline.errors import InputError

if TYPE_CHECKING:
    import torch

    from pipeline.engines.maya1.snac.model import FramesDecoder

# The torch dtypes SNAC may decode in (VOICEBATCH_SNAC_DTYPE): fp32, the reference's, by
# default; fp16 and bf16 are faster and lose fidelity (snac.precision measures how much).
SNAC_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def load_frames_decoder(snac_dir: Path | None) -> FramesDecoder:
    """SNAC from `snac_dir` (offline) wrapped as a FramesDecoder, as loaded: fp32 on the CPU."""
    # lazy: snac.model imports torch at module level, and torch is optional
    from pipeline.engines.maya1.snac.model import FramesDecoder, load_snac

    return FramesDecoder(load_snac(snac_dir))


def torch_dtype_name(dtype: str) -> str:
    """'fp32'/'float32' -> 'float32' (either spelling); InputError for anything else."""
    name = SNAC_DTYPES.get(dtype, dtype)
    if name not in SNAC_DTYPES.values():
        raise InputError(f"SNAC dtype must be one of {', '.join(SNAC_DTYPES)}, not '{dtype}'")
    return name


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
        model: FramesDecoder | None = None,
    ) -> None:
        """SNAC from `snac_dir`, or the already built `model` (moved, not copied), on
        `device` in `dtype` ('float32', 'float16', 'bfloat16' or fp32/fp16/bf16)."""
        import torch

        self.device = device
        self.dtype = torch_dtype_name(dtype)
        self.noise = noise
        self.max_batch_frames = max_batch_frames
        try:
            source = model if model is not None else load_frames_decoder(snac_dir)
            self.model = source.to(device=device, dtype=getattr(torch, self.dtype))
        except (RuntimeError, AssertionError) as exc:  # a device torch cannot use
            raise InputError(f"cannot put the SNAC decoder on device '{device}': {exc}") from exc
        self.model.eval()
        self.noise_factors = self.model.noise_factors
        self.stream: torch.cuda.Stream | None = None
        if torch.device(device).type == "cuda":
            # from PyTorch's pool, created cudaStreamNonBlocking: no implicit sync with the
            # legacy default stream the LLM runs on
            self.stream = torch.cuda.Stream(device=device)
            # the weights were written on the loading thread's stream: ours waits for them once
            self.stream.wait_stream(torch.cuda.current_stream(device))
        self._host: torch.Tensor | None = None  # pinned output buffer, grown as needed
        self._lock = threading.Lock()  # one decode at a time owns the stream and the buffer

    def run_batch(
        self,
        padded: Frames,
        lengths: Frames,
        noise: list[npt.NDArray[np.float32]] | None,
    ) -> npt.NDArray[np.floating]:
        """See BatchedSnacDecoder.run_batch."""
        import torch

        if self.stream is None:
            with torch.inference_mode():
                audio = self.model(
                    torch.from_numpy(padded),
                    torch.from_numpy(lengths),
                    *(torch.from_numpy(array) for array in noise or []),
                )
            return audio.float().numpy()
        with self._lock:
            return self._run_on_stream(self.stream, [padded, lengths, *(noise or [])])

    def _run_on_stream(self, stream: torch.cuda.Stream, arrays: list[Any]) -> npt.NDArray[Any]:
        import torch

        with torch.inference_mode(), torch.cuda.stream(stream):
            # pinned sources make the uploads asynchronous; the tensors are kept alive
            # until the event below has passed, so their memory is not reused early
            pinned = [torch.from_numpy(array).pin_memory() for array in arrays]
            inputs = [tensor.to(self.device, non_blocking=True) for tensor in pinned]
            audio = self.model(*inputs).float()
            host = self._host_buffer(audio.numel())[: audio.numel()].view(audio.shape)
            host.copy_(audio, non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        done.synchronize()  # waits for this stream's work only, never the LLM's
        return host.numpy().copy()

    def _host_buffer(self, size: int) -> torch.Tensor:
        import torch

        if self._host is None or self._host.numel() < size:
            self._host = torch.empty(size, dtype=torch.float32, pin_memory=True)
        return self._host
