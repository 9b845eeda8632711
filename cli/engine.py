"""Speech engine commands: `engines` lists them; `engine export-snac` exports the SNAC decoder
to ONNX or a TensorRT engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.context import cli_state
from cli.output import console, err_console, reported_errors
from pipeline.config import load_settings
from pipeline.engines import ENGINES


def engines() -> None:
    """List the speech engines this install can use."""
    for name in sorted(ENGINES):
        console.print(name)


def export_snac(
    ctx: typer.Context,
    fmt: Annotated[
        str,
        typer.Option("--format", help="onnx (onnxruntime) or tensorrt (this GPU's engine)."),
    ] = "onnx",
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            envvar="VOICEBATCH_SNAC_PRECISION",
            show_envvar=True,
            help="fp32, fp16 or int8; auto: what the decoder loads here (fp16 on a GPU, "
            "fp32 on the CPU).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            envvar="VOICEBATCH_SNAC_EXPORT_DIR",
            show_envvar=True,
            help="Folder for the exported files (default <data_dir>/snac).",
            show_default=False,
        ),
    ] = None,
    snac_dir: Annotated[
        Path | None,
        typer.Option(
            "--snac-dir",
            envvar="VOICEBATCH_SNAC_DIR",
            show_envvar=True,
            help="SNAC 24 kHz folder (config.json + pytorch_model.bin).",
            show_default=False,
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            help="int8: Maya1 frames to calibrate on, .npz (one (n, 7) array per request) or .npy.",
            show_default=False,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            envvar="VOICEBATCH_SNAC_TRT_PROFILE",
            show_envvar=True,
            help="tensorrt: shapes the engine takes, b<min>-<opt>-<max>_f<min>-<opt>-<max> "
            "(batch, frames), or auto: up to the longest chunk, 4,096 frames a call.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Export the SNAC decoder (Maya1 frames -> 24 kHz audio) so the maya1 engine can
    decode with onnxruntime (VOICEBATCH_SNAC_RUNTIME=onnx) or TensorRT (=tensorrt)."""
    # Lazy: exporting runs torch and onnx/tensorrt (optional extras); `render` needs neither.
    from pipeline.engines.maya1.snac.export import export_snac as run_export

    with reported_errors(cli_state(ctx).debug):
        settings = load_settings(snac_dir=snac_dir, snac_export_dir=out, snac_precision=precision)
        with err_console.status(f"exporting the SNAC decoder to {fmt}..."):
            results = run_export(
                settings,
                fmt=fmt,
                precision=settings.snac_precision,
                calibration=calibration,
                profile=profile,
            )
    for result in results:
        size = result.path.stat().st_size / 2**20
        console.print(
            f"wrote {result.path} ({result.precision}, {size:.1f} MiB) in {result.seconds:.1f} s",
            highlight=False,
        )
