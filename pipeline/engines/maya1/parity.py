"""KV-cache parity: cached batched decoding through the HF backend's own forward path must
give the logits of one full forward over prompt plus generated tokens.

Random weights "speak" noise whatever the code does, so only this comparison shows that
the KV cache is used: a transformers release that drops the cache argument into **kwargs
decodes every step without its context, and the logits part from the full forward's at the
first generated token after the prefill (0.9 on the tests' random model, against 4e-7 in
fp32 when the cache is used). The tokens fed back are each step's most likely audio token
of its slot, as real decoding would write; rows are left-padded to the longest, as the
backend pads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.engines.maya1.backends.hf import (
    PARITY_BLOCK,
    SELF_CHECK_PROMPTS,
    SELF_CHECK_STEPS,
    SELF_CHECK_TOLERANCE,
    HFBackend,
    KvCacheBroken,
)

__all__ = [
    "PARITY_BLOCK",
    "SELF_CHECK_PROMPTS",
    "SELF_CHECK_STEPS",
    "SELF_CHECK_TOLERANCE",
    "KvCacheBroken",
    "check_backend_cache",
    "check_kv_parity",
    "kv_parity_max_diff",
]


def kv_parity_max_diff(
    model: Any, prompts: Sequence[Sequence[int]], *, steps: int, pad_id: int
) -> float:
    """The largest absolute logit difference, over every row and every generated position,
    between `steps` tokens of cached batched decoding (the HF backend's forward path,
    left-padded prompts) and one full forward over the prompts plus those tokens."""
    backend = HFBackend(model, pad_id=pad_id, self_check=False)
    return backend.kv_parity(prompts, steps)[0]


def check_kv_parity(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    steps: int,
    pad_id: int,
    tolerance: float,
) -> None:
    """Raise KvCacheBroken (one line) when `kv_parity_max_diff` exceeds `tolerance`, or
    the cache stays empty after the prefill."""
    backend = HFBackend(model, pad_id=pad_id, self_check=False)
    backend.check_cache(prompts, steps, tolerance)


def check_backend_cache(backend: HFBackend) -> None:
    """The backend's load-time self-check (HFBackend runs it at construction): a short
    parity run on two left-padded prompts at SELF_CHECK_TOLERANCE for the model's dtype."""
    backend.check_cache()
