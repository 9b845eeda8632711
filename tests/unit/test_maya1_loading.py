"""Maya1's model folder: one-line InputErrors naming what is missing, the model version
(derived from config + weight identity, without reading weights), precision choice, and
int8 weight-only loading through torchao."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from pipeline.config import load_settings
from pipeline.engines import check_engine, engine_info
from pipeline.engines.maya1.backends.factory import backend_name, vllm_version
from pipeline.engines.maya1.loading import (
    load_model,
    model_dir,
    model_version,
    resolve_precision,
)
from pipeline.errors import InputError
from tests.support.maya1_fixtures import build_tiny_maya1


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_maya1(tmp_path_factory.mktemp("maya1") / "model")


def _copy(model_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_folder, tmp_path / "copy"))


def test_missing_settings_and_folders_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs VOICEBATCH_MAYA1_MODEL_DIR") as info:
        model_dir(load_settings(engine="maya1"))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=f"{tmp_path / 'nope'} does not exist"):
        model_dir(load_settings(engine="maya1", maya1_model_dir=tmp_path / "nope"))


@pytest.mark.parametrize("missing", ["config.json", "tokenizer.json", "tokenizer_config.json"])
def test_a_missing_file_is_named(model_folder: Path, tmp_path: Path, missing: str) -> None:
    folder = _copy(model_folder, tmp_path)
    (folder / missing).unlink()
    with pytest.raises(InputError, match=f"has no {missing}"):
        model_dir(load_settings(engine="maya1", maya1_model_dir=folder))


def test_missing_weights_and_a_small_vocabulary_are_refused(
    model_folder: Path, tmp_path: Path
) -> None:
    folder = _copy(model_folder, tmp_path)
    settings = load_settings(engine="maya1", maya1_model_dir=folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"vocab_size": 128256}))
    with pytest.raises(InputError, match="vocab_size 128256 does not cover Maya1's audio"):
        model_dir(settings)
    for path in folder.glob("*.safetensors"):
        path.unlink()
    with pytest.raises(InputError, match=r"has no \*.safetensors weights"):
        model_dir(settings)


def test_engine_info_and_checks_load_no_weights(model_folder: Path, tmp_path: Path) -> None:
    settings = load_settings(engine="maya1", maya1_model_dir=model_folder)
    with pytest.raises(InputError, match="VOICEBATCH_SNAC_DIR"):
        check_engine(settings)
    snac = tmp_path / "snac"
    snac.mkdir()
    (snac / "config.json").write_text("{}")
    started = time.perf_counter()
    info = engine_info(load_settings(engine="maya1", maya1_model_dir=model_folder, snac_dir=snac))
    assert time.perf_counter() - started < 0.5
    assert info.name == "maya1" and info.model_version == model_version(model_folder)
    assert "voice" in info.default_voice and info.max_chunk_chars == 180


def test_model_version_follows_config_and_weights(model_folder: Path, tmp_path: Path) -> None:
    folder = _copy(model_folder, tmp_path)
    first = model_version(folder)
    assert first == model_version(model_folder) and first.startswith("maya1-")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"rms_norm_eps": 1e-6}))
    second = model_version(folder)
    assert second != first
    # a download records each file's etag (its LFS sha256): new weights, new version
    meta = folder / ".cache" / "huggingface" / "download" / "model.safetensors.metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text("abc123commit\nsha256-of-weights-1\n1700000000.0\n")
    third = model_version(folder)
    meta.write_text("abc123commit\nsha256-of-weights-2\n1700000000.0\n")
    assert len({second, third, model_version(folder)}) == 3


def test_precision_auto_is_fp32_on_cpu_and_bf16_on_gpu() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda:0") == "bf16"
    assert resolve_precision("fp16", "cpu") == "fp16"


def test_backend_choice(model_folder: Path) -> None:
    assert backend_name(load_settings(maya1_backend="hf"), "cuda") == "hf"
    assert backend_name(load_settings(maya1_backend="auto"), "cpu") == "hf"
    if vllm_version() is None:  # the version range itself: tests/unit/test_maya1_vllm.py
        with pytest.raises(InputError, match="vllm is not installed"):
            backend_name(load_settings(maya1_backend="vllm"), "cuda")


def test_int8_quantises_the_linear_weights(model_folder: Path) -> None:
    pytest.importorskip("torchao")
    import torch

    model = load_model(model_folder, precision="int8", device="cpu")
    projection = model.model.layers[0].self_attn.q_proj.weight
    assert "Int8" in type(projection).__name__ or "Affine" in type(projection).__name__
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[128259, 128000, 65, 128257]])).logits
    reference = load_model(model_folder, precision="fp32", device="cpu")
    with torch.inference_mode():
        expected = reference(input_ids=torch.tensor([[128259, 128000, 65, 128257]])).logits
    # weight-only int8 keeps the logits close to fp32 (per-channel scales)
    assert torch.allclose(logits.float(), expected, atol=0.05)
    assert not torch.equal(logits.float(), expected)


def test_an_exported_snac_runtime_needs_no_snac_folder(model_folder: Path) -> None:
    settings = load_settings(engine="maya1", maya1_model_dir=model_folder, snac_runtime="onnx")
    check_engine(settings)  # the export itself is looked for when the decoder loads
    assert engine_info(settings).model_version == model_version(model_folder)
