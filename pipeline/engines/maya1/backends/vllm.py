"""The vLLM backend: continuous batching with the same prompt ids, the same audio-token
constraint and the same unpacking as the transformers backend.

vLLM cannot be installed on the CI machines (no CUDA there), so this module is kept small
and its parts plain: prompts go in as token ids, sampling uses vLLM's own per-request
seeded sampler (each request has its own generator, so batch-mates do not change its
tokens), and the constraint is a per-request logits function wrapped by vLLM's
AdapterLogitsProcessor (the V1 engine's interface, vLLM 0.10 and later).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.engines.maya1.sampling import RowSampling, stop_allowed
from pipeline.engines.maya1.tokens import EOS_SPEECH, MIN_NEW_TOKENS, SLOTS, slot_range
from pipeline.errors import EngineOutOfMemory, InputError

if TYPE_CHECKING:
    import torch

VLLM_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
EXTRA_ARG = "maya1_audio"  # requests carrying it get the audio-token constraint


def constrain_logits(output_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
    """One request's next-token logits with everything but the allowed tokens at -inf:
    the slot of the position (len(output_ids) % 7), and the stop token at a frame boundary
    after MIN_NEW_TOKENS. The same rule as AudioSampler, on a whole-vocabulary row."""
    import torch

    step = len(output_ids)
    low, high = slot_range(step % SLOTS)
    allowed = torch.full_like(logits, float("-inf"))
    allowed[low:high] = logits[low:high]
    if stop_allowed(step):
        allowed[EOS_SPEECH] = logits[EOS_SPEECH]
    return allowed


def _processor_class() -> type:
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    class Maya1AudioTokens(AdapterLogitsProcessor):
        """Applies `constrain_logits` to the requests that ask for it."""

        def is_argmax_invariant(self) -> bool:
            return False

        def new_req_logits_processor(self, params: Any) -> Any:
            extra = getattr(params, "extra_args", None) or {}
            return constrain_logits if extra.get(EXTRA_ARG) else None

    return Maya1AudioTokens


class VllmBackend:
    """Generates audio tokens with vllm.LLM (loaded once, on the GPU)."""

    name = "vllm"

    def __init__(self, folder: Path, *, precision: str, device: str) -> None:
        if precision not in VLLM_DTYPES:
            raise InputError(
                f"precision {precision} is not available with the vllm backend "
                "(use bf16/fp16, or maya1_backend=hf for int8)"
            )
        if not device.startswith("cuda"):
            raise InputError("the vllm backend needs a CUDA device (use maya1_backend=hf)")
        from vllm import LLM

        self.llm = LLM(
            model=str(folder),
            tokenizer=str(folder),
            dtype=VLLM_DTYPES[precision],
            logits_processors=[_processor_class()],
        )

    def generate(
        self, prompts: Sequence[Sequence[int]], rows: Sequence[RowSampling]
    ) -> list[list[int]]:
        """Each row's tokens after SOS, without the stop token."""
        import torch
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=row.temperature,
                top_p=row.top_p,
                repetition_penalty=row.repetition_penalty,
                seed=row.seed,
                max_tokens=row.max_new_tokens,
                min_tokens=max(row.min_new_tokens, MIN_NEW_TOKENS),
                stop_token_ids=[EOS_SPEECH],
                extra_args={EXTRA_ARG: True},
            )
            for row in rows
        ]
        inputs: list[Any] = [{"prompt_token_ids": list(ids)} for ids in prompts]
        try:
            outputs = self.llm.generate(inputs, params, use_tqdm=False)
        except torch.OutOfMemoryError as exc:
            raise EngineOutOfMemory(f"maya1 (vllm) out of memory: {exc}") from exc
        tokens = []
        for output in outputs:
            ids = list(output.outputs[0].token_ids)
            tokens.append(ids[: ids.index(EOS_SPEECH)] if EOS_SPEECH in ids else ids)
        return tokens
