"""SNAC precision: fp32 by default on a GPU, fp16/bf16 on request, and the SNR against fp32
that the benchmark reports (real snac.SNAC, 24 kHz config, random weights, on the CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("snac")

from pipeline.config import load_settings
from pipeline.engines.maya1.snac.factory import decoder_dtype
from tests.support.snac_fixtures import build_tiny_snac


def test_the_gpu_decodes_snac_in_fp32_by_default(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert decoder_dtype(settings, "cuda") == "float32"
    assert decoder_dtype(settings, "cuda:1") == "float32"
    assert decoder_dtype(settings, "cpu") == "float32"


@pytest.mark.parametrize(("setting", "dtype"), [("fp16", "float16"), ("bf16", "bfloat16")])
def test_fp16_and_bf16_are_options_on_the_gpu(tmp_path: Path, setting: str, dtype: str) -> None:
    settings = load_settings(data_dir=tmp_path, snac_dtype=setting)
    assert decoder_dtype(settings, "cuda") == dtype
    assert decoder_dtype(settings, "cpu") == "float32"  # the CPU has no fast half kernels


def test_a_bad_snac_dtype_is_a_one_line_error(tmp_path: Path) -> None:
    from pipeline.errors import InputError

    with pytest.raises(InputError, match="snac_dtype") as info:
        load_settings(data_dir=tmp_path, snac_dtype="int4")
    assert "\n" not in str(info.value)


def test_snr_db_is_signal_over_error_power() -> None:
    from pipeline.engines.maya1.snac.precision import snr_db

    reference = np.array([1.0, -1.0, 1.0, -1.0], dtype=np.float32)
    # error power 0.01 per sample against signal power 1: 20 dB
    assert snr_db(reference, reference + 0.1) == pytest.approx(20.0)
    assert snr_db(reference, reference.astype(np.float64) * 1.001) == pytest.approx(60.0)
    assert snr_db(reference, reference.copy()) == float("inf")
    with pytest.raises(ValueError, match="one shape"):
        snr_db(reference, reference[:3])
    with pytest.raises(ValueError, match="some signal"):
        snr_db(np.zeros(4), np.ones(4))


def test_precision_snr_measures_bf16_against_fp32_on_the_same_noise(tmp_path: Path) -> None:
    from pipeline.engines.maya1.snac.precision import precision_snr
    from pipeline.engines.maya1.snac.torch import TorchSnacDecoder, load_frames_decoder

    model = load_frames_decoder(build_tiny_snac(tmp_path / "snac"))
    codes = np.random.default_rng(0).integers(0, 4096, (6, 7), dtype=np.int64)
    result = precision_snr(model, codes, dtypes=("bfloat16", "float32"))
    # fp32 against itself is exact (the same seeded noise); bf16 keeps ~8 bits of mantissa,
    # which on these weights lands near 39 dB: far from exact, far from noise
    assert result["float32"] == float("inf")
    assert 25.0 < result["bfloat16"] < 50.0
    assert next(model.parameters()).dtype.is_floating_point  # the model is left as it was
    assert str(next(model.parameters()).dtype) == "torch.float32"
    # a factory gives the same numbers for the same codes
    folder = tmp_path / "snac"
    again = precision_snr(
        lambda dtype: TorchSnacDecoder(folder, dtype=dtype), [codes], dtypes=("bf16",)
    )
    assert again["bf16"] == pytest.approx(result["bfloat16"], abs=1e-6)
