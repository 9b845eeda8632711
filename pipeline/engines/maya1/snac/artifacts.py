"""What SNAC exports are called and where they live, for the exporter that writes them
and the runtimes that load them.

- ONNX files: `<export_dir>/snac_decoder.<precision>.onnx`, each stamped with the noise
  factors its graph takes (model metadata `voicebatch.noise_factors`).
- TensorRT engines: one folder per GPU model, precision and shape profile,
  `<export_dir>/tensorrt/<prefix>/` (the prefix is built in `snac.tensorrt`), built from
  the fp32 export (fp16 engines) or the int8 QDQ export (int8 engines).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import InputError

NOISE_FACTORS_KEY = "voicebatch.noise_factors"  # model metadata the ONNX decoder reads
ENGINE_FOLDER = "tensorrt"


def exported_precision(wanted: str, *, gpu: bool) -> str:
    """An exported decoder's precision: as asked, or for auto fp16 on a GPU (SNAC is small:
    int8 buys little there and costs quality), fp32 on the CPU."""
    if wanted != "auto":
        return wanted
    return "fp16" if gpu else "fp32"


def onnx_file_name(precision: str) -> str:
    """The exported file's name for a precision: snac_decoder.<precision>.onnx."""
    return f"snac_decoder.{precision}.onnx"


def onnx_export_command(precision: str) -> str:
    """The command that creates the ONNX file for `precision` (for error messages)."""
    extra = " --calibration FRAMES.npz" if precision == "int8" else ""
    return f"voicebatch engine export-snac --format onnx --precision {precision}{extra}"


def engine_build_command(precision: str) -> str:
    """The command that builds this GPU's TensorRT engine for `precision` (for errors)."""
    return f"voicebatch engine export-snac --format tensorrt --precision {precision}"


def source_model(export_dir: Path, precision: str) -> Path:
    """The ONNX export an engine of `precision` is built from (fp16: fp32 + TensorRT's
    fp16 flag; int8: the calibrated QDQ export)."""
    return export_dir / onnx_file_name("int8" if precision == "int8" else "fp32")


def engine_dir(export_dir: Path, prefix: str) -> Path:
    """The folder holding one engine's files (the engine, its profile, timing cache)."""
    return export_dir / ENGINE_FOLDER / prefix


def engine_files(export_dir: Path, prefix: str) -> list[Path]:
    """The engine files built for `prefix` (empty: not built)."""
    folder = engine_dir(export_dir, prefix)
    return sorted(folder.glob("*.engine")) if folder.is_dir() else []


def read_noise_factors(path: Path) -> list[int]:
    """The noise factors recorded in an export's metadata; InputError if there are none."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's decode errors have no common public base
        raise InputError(f"{path} is not an ONNX model: {exc}") from exc
    values = {entry.key: entry.value for entry in model.metadata_props}
    if NOISE_FACTORS_KEY not in values:
        raise InputError(f"{path} is not a voicebatch SNAC export (no {NOISE_FACTORS_KEY})")
    return [int(value) for value in values[NOISE_FACTORS_KEY].split(",")]


def stamp_noise_factors(path: Path, factors: Sequence[int]) -> None:
    """Record the noise factors in the model's metadata (the ONNX decoder needs them)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = NOISE_FACTORS_KEY, ",".join(str(factor) for factor in factors)
    onnx.save(model, str(path))
