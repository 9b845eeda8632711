"""Which SNAC runtime decodes for the settings: torch from `snac_dir`, or onnxruntime /
TensorRT from the exports in `resolved_snac_export_dir`."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.engines.maya1.loading import resolve_device
from pipeline.engines.maya1.snac.artifacts import (
    exported_precision,
    onnx_export_command,
    onnx_file_name,
)
from pipeline.engines.maya1.snac.base import SnacDecoder
from pipeline.engines.maya1.snac.onnx import OnnxSnacDecoder, onnx_providers
from pipeline.engines.maya1.snac.tensorrt import ShapeProfile, TensorrtSnacDecoder
from pipeline.engines.maya1.snac.torch import TorchSnacDecoder, torch_dtype_name
from pipeline.errors import InputError


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
        providers = onnx_providers(settings.device)
        on_gpu = providers[0] != "CPUExecutionProvider"
        precision = exported_precision(settings.snac_precision, gpu=on_gpu)
        path = export_dir / onnx_file_name(precision)
        if not path.is_file():
            raise InputError(f"no SNAC ONNX export at {path}: run {onnx_export_command(precision)}")
        return OnnxSnacDecoder(path, providers=providers)
    precision = exported_precision(settings.snac_precision, gpu=True)
    if precision == "fp32":
        raise InputError("the tensorrt SNAC runtime builds fp16 or int8 engines, not fp32")
    return TensorrtSnacDecoder(export_dir, precision, ShapeProfile.parse(settings.snac_trt_profile))


def decoder_dtype(settings: Settings, device: str) -> str:
    """SNAC's torch dtype: fp32 on the CPU; on a GPU `settings.snac_dtype`, fp32 unless
    fp16 or bf16 is asked for (the reference decodes in fp32; see snac.precision)."""
    if not device.startswith("cuda"):
        return "float32"
    return torch_dtype_name(settings.snac_dtype)
