"""The HF backend's KV cache is really used, on whichever transformers release is installed
(CI runs this file on the oldest and the newest the maya1 extra allows).

transformers renamed the forward's cache argument (`past_key_values` -> `cache`, 5.24); a
name the forward does not take disappears into its **kwargs, and every step then decodes
without context. Random weights speak noise either way, so these tests compare cached
decoding with full forwards over the same tokens, in fp32 on a tiny Maya1-shaped model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from pipeline.engines.maya1.backends.hf import HFBackend
from pipeline.engines.maya1.loading import load_model
from pipeline.engines.maya1.sampling import RowSampling
from pipeline.engines.maya1.tokens import EOS_SPEECH, SLOTS, SOS, slot_range
from tests.support.maya1_fixtures import build_tiny_maya1

PAD = 128263
STEPS = 70  # ten frames
# left-padded rows of different lengths, each ending in SOS as a Maya1 prompt does
PROMPTS = [
    [128000, 128259, 128000, *range(1000, 1009), SOS],
    [128000, 128259, 128000, *range(2000, 2024), SOS],
    [128000, 128259, 128000, *range(3000, 3015), SOS],
]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = build_tiny_maya1(tmp_path_factory.mktemp("maya1") / "model", seed=3)
    return load_model(folder, precision="fp32", device="cpu")


def _full_slot_logits(model: Any, tokens: list[int], step: int) -> Any:
    """The logits of `step`'s slot at the last position of one uncached forward over
    `tokens` (one row, no padding)."""
    import torch

    low, high = slot_range(step % SLOTS)
    with torch.inference_mode():
        hidden = model.model(input_ids=torch.tensor([tokens]), use_cache=False)
        last = hidden.last_hidden_state[0, -1]
        return torch.nn.functional.linear(last, model.lm_head.weight[low:high]).float()


def test_greedy_generation_picks_the_tokens_full_forwards_pick(model: Any) -> None:
    """Teacher-forced through the public generate(): at every step, the token the cached,
    batched, left-padded decode chose is the best of its slot under one full forward over
    that row's prompt plus the tokens chosen before it."""
    backend = HFBackend(model, pad_id=PAD)
    rows = [
        RowSampling(
            seed=row,
            max_new_tokens=STEPS,
            min_new_tokens=STEPS,
            temperature=0.0,
            top_p=1.0,
            repetition_penalty=1.0,
        )
        for row in range(len(PROMPTS))
    ]
    generated = backend.generate(PROMPTS, rows)
    for prompt, tokens in zip(PROMPTS, generated, strict=True):
        assert len(tokens) == STEPS and EOS_SPEECH not in tokens
        for step, token in enumerate(tokens):
            logits = _full_slot_logits(model, [*prompt, *tokens[:step]], step)
            low, high = slot_range(step % SLOTS)
            assert low <= token < high
            best = float(logits.max())
            assert float(logits[token - low]) >= best - 1e-4, f"step {step}: not the best token"


def test_cached_batched_decoding_matches_one_full_forward(model: Any) -> None:
    from pipeline.engines.maya1.parity import kv_parity_max_diff

    assert STEPS >= 64 and len({len(prompt) for prompt in PROMPTS}) == len(PROMPTS)
    assert str(next(model.parameters()).dtype) == "torch.float32"
    difference = kv_parity_max_diff(model, PROMPTS, steps=STEPS, pad_id=PAD)
    assert difference < 1e-4


def test_the_cache_keyword_is_one_the_forward_names(model: Any) -> None:
    import inspect

    from pipeline.engines.maya1.backends.hf import cache_keyword_of

    keyword = cache_keyword_of(model.model)
    assert keyword in ("cache", "past_key_values")
    assert keyword in inspect.signature(model.model.forward).parameters


def test_a_forward_without_a_cache_argument_is_refused() -> None:
    import torch

    from pipeline.engines.maya1.backends.hf import KvCacheBroken, cache_keyword_of

    class OnlyKwargs(torch.nn.Module):
        def forward(self, input_ids: Any = None, **kwargs: Any) -> Any:
            return input_ids

    with pytest.raises(KvCacheBroken, match="takes no KV cache argument") as info:
        cache_keyword_of(OnlyKwargs())
    assert "\n" not in str(info.value)


def test_a_cache_the_model_ignores_refuses_to_start(model: Any) -> None:
    """The load-time self-check: a keyword the forward does not name (what `cache=` is to
    transformers before 5.24) goes to **kwargs, the cache stays empty, and the backend
    refuses to start with one line."""
    from pipeline.engines.maya1.parity import KvCacheBroken

    with pytest.raises(KvCacheBroken, match="ignored its KV cache") as info:
        HFBackend(model, pad_id=PAD, cache_keyword="kv_cache")
    assert "\n" not in str(info.value)
    assert "holds 0 of" in str(info.value)


def test_check_kv_parity_raises_one_line_above_its_tolerance(model: Any) -> None:
    from pipeline.engines.maya1.parity import KvCacheBroken, check_kv_parity

    check_kv_parity(model, PROMPTS[:2], steps=8, pad_id=PAD, tolerance=1e-4)
    with pytest.raises(KvCacheBroken, match="differs from a full forward") as info:
        check_kv_parity(model, PROMPTS[:2], steps=8, pad_id=PAD, tolerance=-1.0)
    assert "\n" not in str(info.value)
