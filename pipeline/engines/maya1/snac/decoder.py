"""The SNAC 24 kHz decoder: Maya1's frames of 7 codes -> 24 kHz mono audio, batched.

`SnacDecoder` is the interface the Maya1 engine uses (ONNX and TensorRT decoders, still to
be built, will implement it too); `load_snac_decoder(settings)` gives the torch decoder,
built offline from `snac_dir` (config.json + weights), never from the hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pipeline.config import Settings
from pipeline.errors import InputError

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 2048  # 4 level-3 codes x 512x upsampling: 85.3 ms at 24 kHz
CODES_PER_FRAME = 7
CODEBOOK_SIZE = 4096

# The decoder's first frame is warm-up: its convolutions start on zero padding, and the
# Maya1 reference drops those 2048 samples. We keep every frame, so that a request's audio
# is exactly n * 2048 samples (timelines and tests rely on it), and mute the first frame
# instead: the same silence-for-artefact trade, without shifting the speech in time.
STARTUP_SAMPLES = SAMPLES_PER_FRAME
FADE_SAMPLES = 120  # 5 ms raised-cosine ramps at both edges: joins between chunks do not click
DEFAULT_BATCH_FRAMES = 4096  # most padded frames in one decoder call (bounds activation memory)

Frames = npt.NDArray[np.int64]
Audio = npt.NDArray[np.float32]


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
    """The decoder `settings.snac_runtime` names: torch on `settings.device` from
    `settings.snac_dir`, or onnxruntime / TensorRT from the exports in
    `settings.resolved_snac_export_dir`. Raises InputError naming what is missing (for an
    export: the command that creates it)."""
    if settings.snac_runtime == "torch":
        device = resolve_device(settings.device)
        return TorchSnacDecoder(
            settings.snac_dir, device=device, dtype=decoder_dtype(settings, device)
        )
    export_dir = settings.resolved_snac_export_dir
    if settings.snac_runtime == "onnx":
        from pipeline.engines.maya1.snac.export import onnx_export_command, onnx_file_name
        from pipeline.engines.maya1.snac.onnx import OnnxSnacDecoder, onnx_providers

        providers = onnx_providers(settings.device)
        on_gpu = providers[0] != "CPUExecutionProvider"
        precision = exported_precision(settings.snac_precision, gpu=on_gpu)
        path = export_dir / onnx_file_name(precision)
        if not path.is_file():
            raise InputError(f"no SNAC ONNX export at {path}: run {onnx_export_command(precision)}")
        return OnnxSnacDecoder(path, providers=providers)
    from pipeline.engines.maya1.snac.tensorrt import ShapeProfile, TensorrtSnacDecoder

    precision = exported_precision(settings.snac_precision, gpu=True)
    if precision == "fp32":
        raise InputError("the tensorrt SNAC runtime builds fp16 or int8 engines, not fp32")
    return TensorrtSnacDecoder(export_dir, precision, ShapeProfile.parse(settings.snac_trt_profile))


def exported_precision(wanted: str, *, gpu: bool) -> str:
    """An exported decoder's precision: as asked, or for auto fp16 on a GPU (SNAC is small:
    int8 buys little there and costs quality), fp32 on the CPU."""
    if wanted != "auto":
        return wanted
    return "fp16" if gpu else "fp32"


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else as given."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def decoder_dtype(settings: Settings, device: str) -> str:
    """SNAC's torch dtype: fp32 on the CPU; on a GPU fp16 for fp16/int8 (SNAC is small, int8
    buys nothing there), bf16 for bf16/auto, fp32 when asked."""
    if not device.startswith("cuda") or settings.precision == "fp32":
        return "float32"
    return "float16" if settings.precision in ("fp16", "int8") else "bfloat16"


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
            audio = np.asarray(self.run_batch(padded, group_lengths, noise), dtype=np.float32)
            for row, index in enumerate(group):
                results[index] = audio[row, : lengths[index] * SAMPLES_PER_FRAME].copy()
        return results


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

        from pipeline.engines.maya1.snac.model import FramesDecoder, load_snac

        self.device = device
        self.noise = noise
        self.max_batch_frames = max_batch_frames
        try:
            self.model = FramesDecoder(load_snac(snac_dir)).to(
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
