"""The GPU benchmark's arithmetic, on a tiny model: the roofline counts the bytes a decode
step reads (4,097 LM-head rows, not the whole head), and the budget planner cuts a
measurement to its share of the time without going under a few frames."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "maya1_throughput.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("maya1_throughput", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["maya1_throughput"] = module
    spec.loader.exec_module(module)
    return module


def test_a_decode_step_reads_4097_head_rows_not_the_whole_head(bench: ModuleType) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipeline.engines.maya1.backends.hf import HFBackend

    config = LlamaConfig(
        vocab_size=156_940,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    backend = HFBackend(model, pad_id=128263)
    layers = sum(
        p.numel() * 4 for n, p in model.model.named_parameters() if "embed_tokens" not in n
    )
    kv_per_token = 2 * 2 * 1 * 16 * 4  # layers x (K, V) x KV heads x head_dim x fp32
    expected = layers + 4097 * 32 * 4 + 3 * 32 * 4 + 3 * 100 * kv_per_token
    assert bench.step_bytes(backend, 3, 100) == pytest.approx(expected)
    whole = HFBackend(model, pad_id=128263, self_check=False)
    whole._head_weight = None  # a head the backend cannot slice (quantised) is read whole
    assert bench.step_bytes(whole, 3, 100) == pytest.approx(expected + (156_940 - 4097) * 32 * 4)


def test_the_budget_cuts_a_run_to_whole_frames_within_bounds(bench: ModuleType) -> None:
    assert bench.fitting_tokens(10.0, 0.01, 492) == 492  # fits whole
    assert bench.fitting_tokens(2.0, 0.01, 492) == 196  # 200 steps -> 28 whole frames
    assert bench.fitting_tokens(0.01, 0.01, 492) == bench.MIN_TOKENS  # never under 5 frames
    budget = bench.Budget(100.0, slices=4)
    first = budget.take()
    assert 0 < first <= 100 * 0.85 / 4 and budget.slices == 3
