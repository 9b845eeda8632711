"""What decoding SNAC in a lower precision costs: the signal-to-noise ratio of fp16 or bf16
audio against fp32 audio of the same codes and the same noise.

fp32 is the default (the reference decodes in fp32, and the decoder has about 20M
parameters: its time is small beside the LLM's). The benchmark reports these numbers for
the options, VOICEBATCH_SNAC_DTYPE=fp16 or bf16.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from pipeline.engines.maya1.snac.torch import TorchSnacDecoder, torch_dtype_name

if TYPE_CHECKING:
    from pipeline.engines.maya1.snac.model import FramesDecoder

DecoderFactory = Callable[[str], TorchSnacDecoder]


def snr_db(reference: npt.NDArray[np.floating], test: npt.NDArray[np.floating]) -> float:
    """10 log10(power of reference / power of (test - reference)), in dB, over all samples
    of the two arrays (same shape); inf when they are equal. ValueError on mismatched
    shapes or an empty or silent reference."""
    ref = np.asarray(reference, dtype=np.float64)
    other = np.asarray(test, dtype=np.float64)
    if ref.shape != other.shape:
        raise ValueError(f"SNR needs arrays of one shape, got {ref.shape} and {other.shape}")
    signal = float(np.sum(ref * ref))
    if ref.size == 0 or signal == 0.0:
        raise ValueError("SNR needs a reference with some signal in it")
    error = float(np.sum((other - ref) ** 2))
    if error == 0.0:
        return float("inf")
    return float(10.0 * np.log10(signal / error))


def precision_snr(
    decoder_factory_or_model: DecoderFactory | FramesDecoder,
    codes: npt.NDArray[np.int64] | Sequence[npt.NDArray[np.int64]],
    dtypes: Sequence[str] = ("float16", "bfloat16"),
    device: str = "cpu",
) -> dict[str, float]:
    """The SNR in dB of each dtype's decode of `codes` against the fp32 decode, keyed by
    the dtype as given.

    `decoder_factory_or_model`: a function dtype name ('float32', 'float16', …) ->
    TorchSnacDecoder, or a FramesDecoder (copied per dtype, left as it was). `codes`: one
    request's frames (n, 7) or several. Every decode uses the same per-request seeds, so
    the decoder's noise is the same in each and the SNR measures precision alone; the
    raw decoder output is compared (before the muted start-up frame and the fades)."""
    requests = [codes] if isinstance(codes, np.ndarray) and codes.ndim == 2 else list(codes)
    seeds = list(range(len(requests)))
    make = _factory(decoder_factory_or_model, device)
    reference = np.concatenate(make("float32").decode_raw(requests, seeds))
    return {
        dtype: snr_db(
            reference, np.concatenate(make(torch_dtype_name(dtype)).decode_raw(requests, seeds))
        )
        for dtype in dtypes
    }


def _factory(source: DecoderFactory | FramesDecoder, device: str) -> DecoderFactory:
    from torch import nn

    if not isinstance(source, nn.Module):
        return source
    model = cast("FramesDecoder", source)

    def make(dtype: str) -> TorchSnacDecoder:
        return TorchSnacDecoder(None, device=device, dtype=dtype, model=copy.deepcopy(model))

    return make
