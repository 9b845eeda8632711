"""Export the SNAC decoder (Maya1 frames -> 24 kHz audio) to ONNX in fp32, fp16 or int8.

The graph is `FramesDecoder` (snac.model) traced by torch's legacy TorchScript exporter
(`dynamo=False`, opset 17), once two things are fixed in FramesDecoder (no reshape(B, -1),
no TorchScript snake: both froze the frame axis). The dynamo exporter (torch 2.13 +
onnxscript 0.7.2, tried with derived dims `frames * f` for the noise inputs) exports the
same module too and matches torch to 6e-7, but it needs onnxscript, which no extra of ours
installs, and takes 2.6x as long (27 s vs 10 s on 2 CPUs); the legacy exporter is enough. Inputs: `frames` (B, n, 7) int64, `lengths` (B,) int64 and `noise0..noise3`
(B, 1, n * f) float32; output `audio` (B, n * 2048) float32. Batch and frame axes are
dynamic. The noise is an input, not a random op in the graph, so the ONNX decoder adds
the same per-request seeded noise as the torch one (zeros turn it off).

- fp32: the traced graph.
- fp16: weights and activations converted by onnxruntime's float16 converter, inputs and
  output kept float32 (callers feed the same arrays to every precision).
- int8: static QDQ quantization (onnxruntime.quantization) of the convolutions, symmetric
  int8 activations and per-channel weights (the form TensorRT takes as explicit
  quantization), ranges calibrated by decoding real Maya1 frames.

Files are named by precision (`snac_decoder.fp16.onnx`, see snac.artifacts) and written to
a temporary name first, then renamed: a crash never leaves a half-written model where a
decoder looks. TensorRT engines are built from these files by snac.tensorrt.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.config import Settings
from pipeline.engines.maya1.snac.artifacts import (
    exported_precision,
    onnx_file_name,
    stamp_noise_factors,
)
from pipeline.engines.maya1.snac.frames import Frames, check_frames
from pipeline.engines.maya1.snac.noise import batch_noise
from pipeline.engines.maya1.snac.tensorrt import ShapeProfile, build_engine, require_tensorrt
from pipeline.engines.maya1.snac.torch import load_frames_decoder
from pipeline.errors import InputError

ExportPrecision = Literal["fp32", "fp16", "int8"]
EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "tensorrt")
OPSET = 17
CALIBRATION_SEED = 1234  # noise seeds of the calibration decodes (noise is part of the signal)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how long it took."""

    path: Path
    precision: str
    seconds: float


def export_onnx(
    snac_dir: Path | None,
    out_dir: Path,
    *,
    precision: str,
    calibration: Sequence[Frames] | None = None,
) -> ExportResult:
    """Export the decoder from `snac_dir` to out_dir/snac_decoder.<precision>.onnx.
    int8 needs `calibration`: Maya1 frames ((n, 7) code arrays) whose decodes set the
    activation ranges. Raises InputError for a bad folder, precision or calibration."""
    if precision not in EXPORT_PRECISIONS:
        raise InputError(
            f"unknown SNAC export precision '{precision}' (use {', '.join(EXPORT_PRECISIONS)})"
        )
    if precision == "int8" and not calibration:
        raise InputError(
            "int8 SNAC export needs calibration frames: pass --calibration FRAMES.npz "
            "(Maya1 frames, one (n, 7) array per request)"
        )
    checked = _checked_calibration(calibration) if precision == "int8" else []
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    target = out_dir / onnx_file_name(precision)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as work:
        fp32 = Path(work) / onnx_file_name("fp32")
        factors = _trace(snac_dir, fp32)
        if precision == "fp32":
            result = fp32
        elif precision == "fp16":
            result = _to_fp16(fp32, Path(work) / target.name)
        else:
            result = _to_int8(fp32, Path(work) / target.name, checked, factors)
        stamp_noise_factors(result, factors)
        os.replace(result, target)  # same folder, so the rename is atomic
    return ExportResult(target, precision, time.perf_counter() - started)


def export_snac(
    settings: Settings,
    *,
    fmt: str,
    precision: str,
    calibration: Path | None = None,
    profile: str | None = None,
) -> list[ExportResult]:
    """What `voicebatch engine export-snac` does: export the decoder in
    `settings.snac_dir` to ONNX in `settings.resolved_snac_export_dir`, and for
    fmt='tensorrt' build this GPU's engine from it. precision 'auto' is what the runtime
    would load here (exported_precision). Returns each file written, in order."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown SNAC export format '{fmt}' (use {', '.join(EXPORT_FORMATS)})")
    out_dir = settings.resolved_snac_export_dir
    frames = load_calibration(calibration) if calibration is not None else None
    if fmt == "onnx":
        gpu = settings.device != "cpu" and _onnx_has_cuda()
        wanted = exported_precision(precision, gpu=gpu)
        return [export_onnx(settings.snac_dir, out_dir, precision=wanted, calibration=frames)]
    require_tensorrt()  # before a minute of ONNX export that TensorRT could not use
    wanted = exported_precision(precision, gpu=True)
    shapes = ShapeProfile.parse(profile or settings.snac_trt_profile)
    if wanted not in ("fp16", "int8"):
        raise InputError(f"TensorRT SNAC engines are fp16 or int8, not '{wanted}'")
    source = "int8" if wanted == "int8" else "fp32"
    results = [export_onnx(settings.snac_dir, out_dir, precision=source, calibration=frames)]
    started = time.perf_counter()
    engines = build_engine(out_dir, wanted, shapes)
    seconds = time.perf_counter() - started
    return results + [ExportResult(path, wanted, seconds) for path in engines]


def _onnx_has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def load_calibration(path: Path) -> list[Frames]:
    """Calibration frames from a .npy file (one (n, 7) array) or a .npz file (one array
    per request). Raises InputError naming the file."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # .npy: one request
            arrays = [loaded]
        else:  # .npz: one array per request
            with loaded:
                arrays = [loaded[name] for name in loaded.files]
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read calibration frames {path}: {exc}") from exc
    return _checked_calibration(arrays, source=str(path))


def _checked_calibration(frames: Sequence[Frames] | None, source: str = "") -> list[Frames]:
    where = f" in {source}" if source else ""
    if not frames:
        raise InputError(f"no calibration frames{where}")
    try:
        return check_frames(frames, [0] * len(frames))
    except ValueError as exc:
        raise InputError(f"bad calibration frames{where}: {exc}") from exc


def _trace(snac_dir: Path | None, path: Path) -> list[int]:
    """Trace FramesDecoder (fp32, CPU) to `path`; returns its noise factors."""
    import torch

    model = load_frames_decoder(snac_dir).eval()
    factors = list(model.noise_factors)
    # batch 2 x 3 frames with unequal lengths: every traced op sees a real batch and mask
    frames = torch.zeros((2, 3, 7), dtype=torch.int64)
    lengths = torch.tensor([3, 2], dtype=torch.int64)
    noise = [torch.zeros((2, 1, 3 * factor)) for factor in factors]
    names = [f"noise{index}" for index in range(len(factors))]
    axes: dict[str, dict[int, str]] = {
        "frames": {0: "batch", 1: "frames"},
        "lengths": {0: "batch"},
        "audio": {0: "batch", 1: "samples"},
    }
    axes.update({name: {0: "batch", 2: f"{name}_samples"} for name in names})
    with torch.no_grad(), _quiet_tracer():
        torch.onnx.export(
            model,
            (frames, lengths, *noise),
            str(path),
            input_names=["frames", "lengths", *names],
            output_names=["audio"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return factors


@contextmanager
def _quiet_tracer() -> Iterator[None]:
    # The tracer warns that snac's `if pad > 0` is frozen; it is always False there
    # (every residual conv is length-preserving), so the frozen branch is the right one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _to_fp16(source: Path, target: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return target


def _to_int8(source: Path, target: Path, calibration: list[Frames], factors: list[int]) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(target),
        FramesCalibrationReader(calibration, factors),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        # the convolutions are nearly all of SNAC's work; the snake activations, the
        # length masks and the codebook lookups stay float (quantizing them buys little
        # and costs accuracy)
        op_types_to_quantize=["Conv", "ConvTranspose"],
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return target


class FramesCalibrationReader:
    """onnxruntime CalibrationDataReader that decodes each calibration request alone,
    with seeded noise, as the runtime decoder would feed it."""

    def __init__(self, frames: Sequence[Frames], factors: Sequence[int]) -> None:
        self._frames = list(frames)
        self._factors = list(factors)
        self._next = 0

    def get_next(self) -> dict[str, Any] | None:
        """The next request's graph inputs, or None when all were read."""
        if self._next >= len(self._frames):
            return None
        item = self._frames[self._next]
        noise = batch_noise([CALIBRATION_SEED + self._next], [len(item)], len(item), self._factors)
        self._next += 1
        inputs: dict[str, Any] = {
            "frames": item[None, :, :],
            "lengths": np.array([len(item)], dtype=np.int64),
        }
        inputs.update({f"noise{index}": array for index, array in enumerate(noise)})
        return inputs

    def rewind(self) -> None:
        """Start again from the first request."""
        self._next = 0
