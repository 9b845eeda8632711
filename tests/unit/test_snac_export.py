"""SNAC decoder export: the real snac.SNAC 24 kHz config (random weights) exported to ONNX
on the CPU and decoded by onnxruntime next to the torch decoder.

Tolerances (measured on this model: fp32 max abs diff 7.7e-7, int8 SNR 26 dB):
- fp32 ONNX vs torch: max abs diff <= 1e-4 on audio of RMS ~0.23, noise off and same noise;
- int8 ONNX vs torch fp32: SNR >= 15 dB (the decoder output is speech-band audio, where
  an error 15 dB under the signal is audible but clearly the same sound; random weights
  are harder to quantize than trained ones, whose activations are smoother).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("snac")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner

from cli.app import app
from pipeline.config import load_settings
from pipeline.engines.maya1.snac.artifacts import onnx_file_name
from pipeline.engines.maya1.snac.base import STARTUP_SAMPLES, SnacDecoder
from pipeline.engines.maya1.snac.export import export_onnx, load_calibration
from pipeline.engines.maya1.snac.factory import load_snac_decoder
from pipeline.engines.maya1.snac.frames import SAMPLES_PER_FRAME
from pipeline.engines.maya1.snac.onnx import OnnxSnacDecoder
from pipeline.engines.maya1.snac.tensorrt import ShapeProfile, engine_prefix, sanitize
from pipeline.engines.maya1.snac.torch import TorchSnacDecoder
from pipeline.errors import InputError
from tests.support.snac_fixtures import build_tiny_snac

FP32_TOLERANCE = 1e-4
INT8_MIN_SNR_DB = 15.0
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def snac_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_snac(tmp_path_factory.mktemp("snac"))


@pytest.fixture(scope="module")
def export_dir(snac_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 export, made by the CLI command a user runs."""
    out = tmp_path_factory.mktemp("export")
    result = CliRunner().invoke(
        app,
        [
            *("engine", "export-snac", "--format", "onnx", "--precision", "fp32"),
            *("--snac-dir", str(snac_dir), "--out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'snac_decoder.fp32.onnx'}" in result.output.replace("\n", "")
    return out


@pytest.fixture(scope="module")
def torch_decoder(snac_dir: Path) -> TorchSnacDecoder:
    return TorchSnacDecoder(snac_dir)


@pytest.fixture(scope="module")
def onnx_decoder(export_dir: Path) -> OnnxSnacDecoder:
    return OnnxSnacDecoder(export_dir / "snac_decoder.fp32.onnx")


def _frames(*counts: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4096, (count, 7), dtype=np.int64) for count in counts]


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - other) ** 2)))


def test_cli_export_leaves_only_the_named_file(export_dir: Path) -> None:
    assert sorted(path.name for path in export_dir.iterdir()) == ["snac_decoder.fp32.onnx"]


def test_onnx_equals_torch_with_noise_off(
    torch_decoder: TorchSnacDecoder, onnx_decoder: OnnxSnacDecoder
) -> None:
    frames = _frames(3, 12, 7)
    expected = torch_decoder.decode_raw(frames, seeds=None)
    got = onnx_decoder.decode_raw(frames, seeds=None)
    for item, want, have in zip(frames, expected, got, strict=True):
        assert len(have) == len(item) * SAMPLES_PER_FRAME == len(want)
        assert np.abs(have - want).max() <= FP32_TOLERANCE
    assert np.sqrt(np.mean(expected[1] ** 2)) > 0.05  # a real signal, not two silences


def test_onnx_equals_torch_with_the_same_seeded_noise(
    torch_decoder: TorchSnacDecoder, onnx_decoder: OnnxSnacDecoder
) -> None:
    """The noise is a graph input drawn per request from its seed, so both runtimes add
    the same noise; the finished audio (start-up muted, faded) agrees too."""
    frames = _frames(5, 9, seed=1)
    expected = torch_decoder.decode(frames, seeds=[41, 42])
    got = onnx_decoder.decode(frames, seeds=[41, 42])
    silent = onnx_decoder.decode(frames, seeds=[43, 44])
    assert isinstance(onnx_decoder, SnacDecoder) and onnx_decoder.sample_rate == 24_000
    for want, have, other in zip(expected, got, silent, strict=True):
        assert np.abs(have - want).max() <= FP32_TOLERANCE
        assert not have[:STARTUP_SAMPLES].any()
        assert np.abs(have - other).max() > 1e-3  # the seed does change the noise


def test_dynamic_batch_and_frame_axes(onnx_decoder: OnnxSnacDecoder) -> None:
    """Two batch sizes and frame counts through the raw graph, none of them the traced
    (2, 3); within a batch each row equals the row decoded alone (the mask is in the graph)."""
    for batch, frames in ((1, 5), (4, 11)):
        codes = np.stack(_frames(*[frames] * batch, seed=batch))
        lengths = np.array([frames] + [max(1, frames - 3)] * (batch - 1), dtype=np.int64)
        audio = onnx_decoder.run_batch(codes, lengths, None)
        assert audio.shape == (batch, frames * SAMPLES_PER_FRAME)
        if batch > 1:
            alone = onnx_decoder.run_batch(codes[1:2, : lengths[1]], lengths[1:2], None)
            np.testing.assert_allclose(
                audio[1, : lengths[1] * SAMPLES_PER_FRAME], alone[0], atol=FP32_TOLERANCE
            )


def test_int8_export_is_calibrated_and_close(
    snac_dir: Path, export_dir: Path, torch_decoder: TorchSnacDecoder, tmp_path: Path
) -> None:
    calibration = tmp_path / "frames.npz"
    np.savez(calibration, *_frames(6, 4, seed=5))
    result = export_onnx(
        snac_dir, tmp_path / "out", precision="int8", calibration=load_calibration(calibration)
    )
    assert result.path.name == onnx_file_name("int8") == "snac_decoder.int8.onnx"
    # int8 weights: well under half the fp32 file
    assert result.path.stat().st_size < 0.5 * (export_dir / onnx_file_name("fp32")).stat().st_size
    frames = _frames(8, 3, seed=6)
    expected = torch_decoder.decode_raw(frames, seeds=[1, 2])
    got = OnnxSnacDecoder(result.path).decode_raw(frames, seeds=[1, 2])
    for item, want, have in zip(frames, expected, got, strict=True):
        assert len(have) == len(item) * SAMPLES_PER_FRAME
        assert _snr_db(want, have) >= INT8_MIN_SNR_DB


def test_onnx_runtime_from_settings(export_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(
        snac_runtime="onnx", snac_export_dir=export_dir, device="cpu", data_dir=tmp_path
    )
    decoder = load_snac_decoder(settings)
    assert isinstance(decoder, OnnxSnacDecoder)
    assert decoder.providers == ["CPUExecutionProvider"]
    assert len(decoder.decode(_frames(2), seeds=[0])[0]) == 2 * SAMPLES_PER_FRAME


def test_missing_export_names_the_command_that_creates_it(tmp_path: Path) -> None:
    settings = load_settings(
        snac_runtime="onnx", snac_precision="int8", device="cpu", data_dir=tmp_path
    )
    with pytest.raises(InputError) as info:
        load_snac_decoder(settings)
    message = str(info.value)
    assert str(tmp_path / "snac" / "snac_decoder.int8.onnx") in message
    assert "voicebatch engine export-snac --format onnx --precision int8 --calibration" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "int8"], "int8 SNAC export needs calibration frames"),
        (["--precision", "int4"], "invalid setting snac_precision"),
        (["--format", "coreml"], "unknown SNAC export format 'coreml'"),
        (["--precision", "int8", "--calibration", "absent.npz"], "cannot read calibration"),
    ],
)
def test_bad_export_requests_are_one_line_errors(
    snac_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["engine", "export-snac", "--snac-dir", str(snac_dir), "--out", str(out), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ")
    assert not out.exists() or not list(out.iterdir())  # nothing half-written


def test_bad_calibration_frames_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, np.full((3, 7), 5000, dtype=np.int64))
    with pytest.raises(
        InputError, match=r"bad calibration frames in .*codes must lie in 0\.\.4095"
    ):
        load_calibration(path)


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the path where TensorRT is missing")
def test_tensorrt_missing_is_a_clear_input_error(snac_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(snac_runtime="tensorrt", data_dir=tmp_path)
    with pytest.raises(InputError, match="needs TensorRT: pip install tensorrt"):
        load_snac_decoder(settings)
    result = CliRunner().invoke(
        app,
        [
            *("engine", "export-snac", "--format", "tensorrt", "--snac-dir", str(snac_dir)),
            *("--out", str(tmp_path / "trt")),
        ],
    )
    assert result.exit_code == 2
    assert "needs TensorRT" in result.output
    assert not (tmp_path / "trt").exists()  # refused before any export work


def test_engine_names_carry_gpu_precision_and_profile() -> None:
    profile = ShapeProfile.parse("b1-8-64_f1-64-512")
    assert profile == ShapeProfile(1, 8, 64, 1, 64, 512)
    assert ShapeProfile.parse("auto") == ShapeProfile()
    assert sanitize("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert (
        engine_prefix("NVIDIA H100 80GB HBM3", "int8", profile)
        == "snac_nvidia-h100-80gb-hbm3_int8_b1-8-64_f1-64-512"
    )
    assert profile.shapes("max", [32, 256]) == (
        "frames:64x512x7,lengths:64,noise0:64x1x16384,noise1:64x1x131072"
    )
    with pytest.raises(InputError, match="min <= opt <= max"):
        ShapeProfile.parse("b8-4-64_f1-64-512")
    with pytest.raises(InputError, match="want auto or b<min>"):
        ShapeProfile.parse("b1-8-64")


def test_the_default_profile_covers_the_longest_chunk_in_one_call_of_memory() -> None:
    from pipeline.engines.maya1.snac.frames import DEFAULT_BATCH_FRAMES, decode_groups
    from pipeline.engines.maya1.snac.tensorrt import MAX_CHUNK_FRAMES
    from pipeline.engines.maya1.tokens import MAX_NEW_TOKENS, SLOTS, max_new_tokens

    # the longest chunk: whatever text, the engine never asks for more than the token cap
    longest = max(max_new_tokens("x" * chars) for chars in range(0, 5000, 50)) // SLOTS
    assert longest == MAX_NEW_TOKENS // SLOTS == MAX_CHUNK_FRAMES
    profile = ShapeProfile()
    assert profile.max_frames >= longest
    # memory for max batch x max frames: no more than a call ever holds, and nearly all of it
    assert profile.max_batch * profile.max_frames <= DEFAULT_BATCH_FRAMES
    assert (profile.max_batch + 1) * profile.max_frames > DEFAULT_BATCH_FRAMES
    assert profile.min_batch == profile.min_frames == 1
    profile.check_serves_the_engine()
    # every call the decoder makes of longest-chunk requests stays inside the profile
    groups = decode_groups([longest] * 40, DEFAULT_BATCH_FRAMES, profile.max_batch)
    assert all(len(group) <= profile.max_batch for group in groups)
    assert all(len(group) * longest <= profile.max_batch * profile.max_frames for group in groups)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (
            "b1-8-64_f1-64-512",
            "reserves memory for 32768 frames but a decoder call holds at most 4096",
        ),
        ("b1-1-1_f1-64-256", "stops at 256 frames but a chunk may reach 292"),
    ],
)
def test_profiles_that_miss_a_chunk_or_overbook_memory_are_refused(tag: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        ShapeProfile.parse(tag).check_serves_the_engine()
    assert "\n" not in str(info.value)


def test_a_tensorrt_provider_that_does_not_start_is_refused_not_run_on_cuda(
    tmp_path: Path,
) -> None:
    """onnxruntime drops a provider it cannot start and runs on the next one; here the real
    TensorRT provider list meets an onnxruntime without TensorRT, the same silent fallback."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    from pipeline.engines.maya1.snac.tensorrt import require_provider, trt_providers

    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime starts TensorRT: the fallback cannot be provoked here")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    providers = trt_providers(tmp_path, "snac_test", "fp16", ShapeProfile(), [32, 256])
    with pytest.warns(UserWarning, match="TensorrtExecutionProvider"):
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    assert "TensorrtExecutionProvider" not in session.get_providers()  # it fell back, silently
    with pytest.raises(InputError, match="did not start its TensorrtExecutionProvider") as info:
        require_provider(session)
    assert "\n" not in str(info.value)
    require_provider(session, "CPUExecutionProvider")  # a provider that started passes


@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt is not installed")
def test_tensorrt_engine_builds_caches_and_matches(
    export_dir: Path, torch_decoder: TorchSnacDecoder
) -> None:
    from pipeline.engines.maya1.snac.tensorrt import (
        MAX_CHUNK_FRAMES,
        TensorrtSnacDecoder,
        build_engine,
    )

    profile = ShapeProfile(1, 2, 4, 1, 8, MAX_CHUNK_FRAMES)  # small opt: a quick build
    engines = build_engine(export_dir, "fp16", profile)
    assert engines and all(profile.tag in str(path) for path in engines)
    decoder = TensorrtSnacDecoder(export_dir, "fp16", profile)
    frames = _frames(5, 8, seed=9)
    expected = torch_decoder.decode(frames, seeds=[1, 2])
    for want, have in zip(expected, decoder.decode(frames, seeds=[1, 2]), strict=True):
        assert _snr_db(want, have) >= 30.0  # fp16
    assert decoder.session.get_providers()[0] == "TensorrtExecutionProvider"
    # the longest chunk the engine allows decodes inside the profile
    longest = decoder.decode(_frames(MAX_CHUNK_FRAMES, 3, seed=4), seeds=[3, 4])
    assert len(longest[0]) == MAX_CHUNK_FRAMES * SAMPLES_PER_FRAME
