"""SNAC as a batched, length-aware, per-request-seeded torch module (needs torch + snac).

`FramesDecoder(frames, lengths)` takes Maya1 frames (B, n, 7) padded to the longest
request and each request's frame count, and returns (B, n * 2048) audio in which every
request's samples are the ones it would get decoded alone:

- SNAC's convolutions are not causal, so a short request's last samples would "see" its
  batch-mates' padding. A pre-hook on every convolution zeroes each request's input past
  its own length, exactly what the zero padding of an unbatched decode feeds the kernel
  (every layer's length is frames x a fixed factor, so the mask is exact).
- SNAC's NoiseBlocks draw `torch.randn` over the whole batch. They are replaced by blocks
  that take the noise as forward inputs (one per block, `noise_factors` samples per
  frame); the caller draws each request's noise from its own seed (`batch_noise` in
  snac.noise), or passes none to turn the noise off.

The same module is what `snac.export` traces to ONNX, noise as graph inputs and masks
kept: the mask uses only elementwise ops, so the graph keeps dynamic batch and frame axes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import InputError

WEIGHTS_FILE = "pytorch_model.bin"
CONFIG_FILE = "config.json"


def split_levels(frames: torch.Tensor) -> list[torch.Tensor]:
    """(B, n, 7) Maya1 frames -> SNAC's three code levels (B, n), (B, 2n), (B, 4n).
    Slot 0 -> level 1; slots 1,4 -> level 2; slots 2,3,5,6 -> level 3, in time order."""
    # flatten, not reshape(batch, -1): the ONNX tracer freezes the -1 to the traced size
    level1 = frames[:, :, 0]
    level2 = torch.stack((frames[:, :, 1], frames[:, :, 4]), dim=-1).flatten(1)
    level3 = torch.stack(
        (frames[:, :, 2], frames[:, :, 3], frames[:, :, 5], frames[:, :, 6]), dim=-1
    ).flatten(1)
    return [level1, level2, level3]


def load_snac(snac_dir: Path | None) -> nn.Module:
    """`snac.SNAC(**config)` from snac_dir/config.json and its weights, built offline."""
    if snac_dir is None:
        raise InputError("maya1 needs the SNAC decoder folder: set VOICEBATCH_SNAC_DIR")
    config_path, weights_path = snac_dir / CONFIG_FILE, snac_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise InputError(f"SNAC decoder folder {snac_dir} has no {path.name}")
    from snac import SNAC

    try:
        config: dict[str, Any] = json.loads(config_path.read_text())
        model = SNAC(**config)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        raise InputError(f"SNAC decoder folder {snac_dir} is not a SNAC model: {exc}") from exc
    return model.eval()


class _InputNoise(nn.Module):
    """SNAC's NoiseBlock (x + noise * linear(x)) with the noise given as an input.

    SNAC draws `torch.randn` over the whole batch inside the graph; taking it from the
    caller instead lets every request's noise come from its own seed (batch-independent
    audio), makes torch, ONNX and TensorRT decode the same noise, and keeps random ops,
    which ONNX cannot seed per request, out of the exported graph."""

    def __init__(self, linear: nn.Module, index: int, owner: FramesDecoder) -> None:
        super().__init__()
        self.linear = linear
        self.index = index
        self._owner = [owner]  # a list: not a registered submodule (no cycle in .modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = self._owner[0].current_noise
        if noise is None:
            return x
        return x + noise[self.index].to(x.dtype) * self.linear(x)


class _Snake(nn.Module):
    """snac's Snake1d, x + sin(alpha x)^2 / alpha, without its TorchScript helper: the ONNX
    tracer freezes that helper's reshape(B, C, -1) to the traced length (a no-op on the
    decoder's 3-d tensors anyway), which breaks the dynamic frame axis."""

    def __init__(self, alpha: nn.Parameter) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class FramesDecoder(nn.Module):
    """SNAC's quantizer + decoder, fed Maya1 frames; see the module docstring."""

    def __init__(self, snac: Any) -> None:
        super().__init__()
        from snac.layers import NoiseBlock, Snake1d

        self.quantizer: Any = snac.quantizer  # snac has no type hints
        self.decoder: Any = snac.decoder
        # weight norm is a training device: fold it into plain weights (faster, exportable)
        for module in [*self.quantizer.modules(), *self.decoder.modules()]:
            if _has_weight_norm(module):
                torch.nn.utils.parametrize.remove_parametrizations(module, "weight")
        noise_index = 0
        for module in list(self.decoder.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, NoiseBlock):
                    setattr(module, name, _InputNoise(child.linear, noise_index, self))
                    noise_index += 1
                elif isinstance(child, Snake1d):
                    setattr(module, name, _Snake(child.alpha))
        self.current_lengths: torch.Tensor | None = None
        self.current_noise: Sequence[torch.Tensor] | None = None
        self._mask_factor: dict[nn.Module, int] = {}
        convs = [m for m in self.decoder.modules() if isinstance(m, nn.Conv1d | nn.ConvTranspose1d)]
        noises = [m for m in self.decoder.modules() if isinstance(m, _InputNoise)]
        self._measure_factors([*convs, *noises])
        #: samples of noise per frame at each noise block, in block order (32, 256, 1024, 2048
        #: for the 24 kHz model): input i of the forward pass is (B, 1, n * noise_factors[i])
        self.noise_factors: list[int] = [self._mask_factor.pop(block) for block in noises]
        for conv in convs:
            conv.register_forward_pre_hook(self._mask_input)

    def _measure_factors(self, convs: Sequence[nn.Module]) -> None:
        """Each conv's (and noise block's) input length per frame, from decoding one frame."""

        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self._mask_factor[module] = int(args[0].shape[-1])

        handles = [conv.register_forward_pre_hook(record) for conv in convs]
        try:
            with torch.inference_mode():
                self.decoder(self.quantizer.from_codes(split_levels(_one_frame(self))))
        finally:
            for handle in handles:
                handle.remove()

    def _mask_input(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        x = args[0]
        lengths = self.current_lengths
        if lengths is None or module not in self._mask_factor:
            return (x,)
        # positions 1..T from a cumulative sum: no shape arithmetic, so ONNX keeps dynamic axes
        positions = torch.ones_like(x[:1, :1, :], dtype=torch.int32).cumsum(-1)
        limit = (lengths.to(torch.int32) * self._mask_factor[module]).view(-1, 1, 1)
        return (x * (positions <= limit).to(x.dtype),)

    def forward(
        self, frames: torch.Tensor, lengths: torch.Tensor, *noise: torch.Tensor
    ) -> torch.Tensor:
        """frames (B, n, 7) int64, lengths (B,) int64 frame counts, and either no noise
        (noise off) or one float tensor (B, 1, n * f) per `noise_factors` entry f
        -> audio (B, n * 2048)."""
        if noise and len(noise) != len(self.noise_factors):
            raise ValueError(f"SNAC needs {len(self.noise_factors)} noise inputs, got {len(noise)}")
        self.current_lengths = lengths
        self.current_noise = noise or None
        try:
            z_q = self.quantizer.from_codes(split_levels(frames))
            return self.decoder(z_q.to(next(self.decoder.parameters()).dtype))[:, 0, :]
        finally:
            self.current_lengths = None
            self.current_noise = None


def _has_weight_norm(module: nn.Module) -> bool:
    parametrizations = getattr(module, "parametrizations", None)
    return parametrizations is not None and "weight" in parametrizations


def _one_frame(decoder: nn.Module) -> torch.Tensor:
    device = next(decoder.parameters()).device
    return torch.zeros((1, 1, 7), dtype=torch.int64, device=device)
