"""The vLLM backend without a GPU: the audio-token mask its logits processor applies (plain
torch, on the CPU), the processor's methods against vLLM's Model Runner V2 interface, and
the version range inside which `auto` picks vLLM. Where vLLM is importable, the processor
class is checked against vLLM's own interface class and loader."""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from pipeline.config import load_settings
from pipeline.engines.maya1.backends.factory import (
    backend_name,
    vllm_range_text,
    vllm_supported,
    vllm_version,
)
from pipeline.engines.maya1.backends.vllm import (
    PROCESSOR_FQCN,
    PROCESSOR_INTERFACE,
    AudioTokenMask,
    VllmBackend,
    _Maya1AudioTokensMethods,
    audio_mask_rows,
    method_parameters,
)
from pipeline.engines.maya1.sampling import stop_allowed
from pipeline.engines.maya1.tokens import EOS_SPEECH, slot_range
from pipeline.errors import InputError

VOCAB = 156_940  # Maya1's vocabulary (Llama 3's 128,256 and the SNAC codes above it)


def _kept(row: torch.Tensor) -> list[int]:
    return sorted(torch.isfinite(row).nonzero().flatten().tolist())


def _expected(step: int) -> list[int]:
    low, high = slot_range(step % 7)
    return sorted([*range(low, high), *([EOS_SPEECH] if stop_allowed(step) else [])])


def test_each_row_keeps_its_slots_codes_and_the_stop_at_frame_boundaries() -> None:
    steps = [0, 1, 6, 7, 27, 28, 29, 35, 2043]
    logits = torch.randn(len(steps), VOCAB)
    original = logits.clone()
    constrained = torch.ones(len(steps), dtype=torch.bool)
    out = audio_mask_rows(logits, torch.tensor(steps), constrained)
    assert out.data_ptr() == logits.data_ptr()  # in place, as vLLM prefers
    for row, step in enumerate(steps):
        assert _kept(out[row]) == _expected(step), step
        low, high = slot_range(step % 7)
        assert torch.equal(out[row, low:high], original[row, low:high])  # values untouched


def test_rows_that_did_not_ask_are_left_alone() -> None:
    logits = torch.randn(3, VOCAB)
    original = logits.clone()
    audio_mask_rows(logits, torch.tensor([5, 5, 5]), torch.tensor([False, True, False]))
    assert torch.equal(logits[0], original[0]) and torch.equal(logits[2], original[2])
    assert _kept(logits[1]) == _expected(5)


def test_the_mask_follows_request_slots_positions_and_prompt_lengths() -> None:
    mask = AudioTokenMask(max_num_reqs=8, device="cpu")
    assert mask.add(3, True) is True
    assert mask.add(5, False) is False
    mask.flush()
    prompt_lens = torch.zeros(8, dtype=torch.int32)
    prompt_lens[3], prompt_lens[5] = 40, 12
    # rows in any order, and two rows for slot 3 (speculative decoding's draft rows):
    # position 39 is slot 3's last prompt token -> its first generated token (step 0)
    row_slots = torch.tensor([5, 3, 3], dtype=torch.int32)
    positions = torch.tensor([20, 39, 40 + 28 - 1])
    logits = torch.randn(3, VOCAB)
    original = logits.clone()
    mask.apply(logits, row_slots, positions, prompt_lens)
    assert torch.equal(logits[0], original[0])  # slot 5 did not ask
    assert _kept(logits[1]) == _expected(0)
    assert _kept(logits[2]) == _expected(28)  # a frame boundary after 28 tokens: stop allowed


def test_a_reused_slot_takes_its_new_requests_setting_once_flushed() -> None:
    mask = AudioTokenMask(max_num_reqs=4, device="cpu")
    mask.add(1, True)
    mask.flush()
    mask.add(1, False)  # the slot freed and given to a request that does not ask
    before = torch.randn(1, VOCAB)
    mask.apply(before, torch.tensor([1]), torch.tensor([9]), torch.zeros(4, dtype=torch.int32))
    assert _kept(before[0]) == _expected(10)  # staged, not yet on the device
    mask.flush()
    after = torch.randn(1, VOCAB)
    untouched = after.clone()
    mask.apply(after, torch.tensor([1]), torch.tensor([9]), torch.zeros(4, dtype=torch.int32))
    assert torch.equal(after, untouched)


def test_the_processor_implements_the_model_runner_v2_interface() -> None:
    # the methods and parameter names vLLM 0.32-0.34 declare (PROCESSOR_INTERFACE)
    assert method_parameters(_Maya1AudioTokensMethods) == PROCESSOR_INTERFACE
    assert isinstance(
        inspect.getattr_static(_Maya1AudioTokensMethods, "validate_params"), classmethod
    )
    params = type("Params", (), {"extra_args": {"maya1_audio": "yes"}})()
    with pytest.raises(ValueError, match="must be true or false"):
        _Maya1AudioTokensMethods.validate_params(params)


@pytest.mark.parametrize(
    ("installed", "device", "expected"),
    [
        ("0.34.0", "cuda", "vllm"),
        ("0.32.0", "cuda:1", "vllm"),
        ("0.33.1rc1", "cuda", "vllm"),
        ("0.34.0+cu130", "cuda", "vllm"),
        ("0.34.0", "cpu", "hf"),
        ("0.31.2", "cuda", "hf"),  # the interface the backend uses is not there yet
        ("0.35.0", "cuda", "hf"),  # not read: may have changed it again
        ("1.0.0", "cuda", "hf"),
        ("", "cuda", "hf"),
    ],
)
def test_auto_picks_vllm_only_inside_the_supported_range(
    tmp_path: Path, installed: str, device: str, expected: str
) -> None:
    settings = load_settings(maya1_backend="auto", data_dir=tmp_path)
    assert backend_name(settings, device, installed=installed) == expected


def test_an_explicit_vllm_outside_the_range_is_a_one_line_error(tmp_path: Path) -> None:
    settings = load_settings(maya1_backend="vllm", data_dir=tmp_path)
    assert vllm_range_text() == "vllm>=0.32,<0.35"
    with pytest.raises(InputError, match=r"needs vllm>=0.32,<0.35 \(vllm 0.30.1 is installed\)"):
        backend_name(settings, "cuda", installed="0.30.1")
    assert backend_name(settings, "cuda", installed="0.33.0") == "vllm"
    if vllm_version() is None:
        with pytest.raises(InputError, match="vllm is not installed") as info:
            backend_name(settings, "cuda")
        assert "\n" not in str(info.value)


def test_the_version_comes_from_metadata_without_importing_vllm(tmp_path: Path) -> None:
    try:
        expected: str | None = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        expected = None
    imported = "vllm" in sys.modules
    assert vllm_version() == expected
    backend_name(load_settings(maya1_backend="auto", data_dir=tmp_path), "cuda")
    assert ("vllm" in sys.modules) == imported
    assert not vllm_supported(None)


def test_model_length_and_memory_share_are_settings(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.maya1_vllm_max_model_len == 4096
    assert settings.maya1_vllm_gpu_memory_utilization == 0.8
    tuned = load_settings(
        data_dir=tmp_path, maya1_vllm_max_model_len=8192, maya1_vllm_gpu_memory_utilization=0.6
    )
    assert (tuned.maya1_vllm_max_model_len, tuned.maya1_vllm_gpu_memory_utilization) == (8192, 0.6)
    with pytest.raises(InputError, match="VOICEBATCH_MAYA1_VLLM_MAX_MODEL_LEN"):
        load_settings(data_dir=tmp_path, maya1_vllm_max_model_len=1000)  # < the token cap
    with pytest.raises(InputError, match="VOICEBATCH_MAYA1_VLLM_GPU_MEMORY_UTILIZATION"):
        load_settings(data_dir=tmp_path, maya1_vllm_gpu_memory_utilization=1.5)


def test_the_backend_refuses_the_cpu_before_loading_anything(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs a CUDA device"):
        VllmBackend(
            tmp_path, precision="bf16", device="cpu", max_model_len=4096, gpu_memory_utilization=0.8
        )


def test_where_vllm_is_importable_the_processor_is_one_of_its_logits_processors() -> None:
    pytest.importorskip("vllm")
    import vllm
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor
    from vllm.v1.worker.gpu.sample.logits_processor.loader import _load_v2_logitsprocs_by_fqcns

    from pipeline.engines.maya1.backends.vllm import processor_class

    assert vllm_supported(vllm.__version__), vllm.__version__
    cls = processor_class()
    assert issubclass(cls, LogitsProcessor) and not inspect.isabstract(cls)
    # the interface as vLLM declares it is the one the processor was written against
    assert method_parameters(LogitsProcessor) == PROCESSOR_INTERFACE
    assert method_parameters(cls) == PROCESSOR_INTERFACE
    # vLLM's own loader resolves the name the backend passes to LLM(logits_processors=...)
    assert _load_v2_logitsprocs_by_fqcns([PROCESSOR_FQCN]) == [cls]
