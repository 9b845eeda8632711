"""The vLLM backend: continuous batching with the same prompt ids, the same audio-token
constraint and the same unpacking as the transformers backend.

The constraint is a custom logits processor of vLLM's Model Runner V2, the only model
runner from vLLM 0.34 and the default one for Llama models from 0.32: a subclass of
`vllm.v1.worker.gpu.sample.logits_processor.LogitsProcessor`, passed to `vllm.LLM` by its
qualified name. The older interfaces (per-request functions, `AdapterLogitsProcessor`,
`vllm.v1.sample.logits_processor.LogitsProcessor`) are refused by that runner at start-up.
Structured outputs could not express the rule (a token range that moves with the position
modulo 7) short of a grammar over 28,672 token strings. VLLM_RANGE is the range whose
interface this module was written against (read from the 0.32, 0.33 and 0.34 sources);
the backend factory picks vLLM only inside it.

vLLM cannot be installed on the CI machines (no CUDA there), so the masking itself is
`AudioTokenMask`, plain torch, tested on the CPU; the vLLM class only adapts it. Prompts go
in as token ids, and sampling uses vLLM's own per-request seeded sampler.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.engines.maya1.sampling import RowSampling
from pipeline.engines.maya1.tokens import (
    AUDIO_BASE,
    CODEBOOK,
    EOS_SPEECH,
    MIN_NEW_TOKENS,
    SLOTS,
)
from pipeline.errors import EngineOutOfMemory, InputError

if TYPE_CHECKING:
    import torch

VLLM_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
EXTRA_ARG = "maya1_audio"  # requests carrying it get the audio-token constraint
# The vLLM releases whose Model Runner V2 logits-processor interface is PROCESSOR_INTERFACE
# (also the `vllm` extra's pin in pyproject.toml): lowest included, highest excluded.
VLLM_RANGE = ((0, 32), (0, 35))
# The interface, method by method: parameter names after self/cls, as vLLM 0.32-0.34
# declare them in vllm/v1/worker/gpu/sample/logits_processor/interface.py.
PROCESSOR_INTERFACE: dict[str, tuple[str, ...]] = {
    "__init__": ("vllm_config", "req_states"),
    "validate_params": ("sampling_params",),
    "add_request": ("req_idx", "sampling_params"),
    "apply_staged_writes": (),
    "apply": ("logits", "ctx"),
}
PROCESSOR_NAME = "Maya1AudioTokens"
PROCESSOR_FQCN = f"{__name__}:{PROCESSOR_NAME}"


def audio_mask_rows(
    logits: torch.Tensor, steps: torch.Tensor, constrained: torch.Tensor
) -> torch.Tensor:
    """`logits` (rows, vocab) with, in each constrained row, everything but the allowed
    tokens at -inf: the audio codes of the row's slot (steps % 7) and the stop token at a
    frame boundary from MIN_NEW_TOKENS on (sampling.stop_allowed). `steps`: how many
    tokens each row's request has generated; rows not `constrained` are left alone. The
    same rule as AudioSampler, for every row at once, in place, with no host sync."""
    import torch

    steps = steps.to(device=logits.device, dtype=torch.int64)
    slot = steps.remainder(SLOTS)
    low = (AUDIO_BASE + slot * CODEBOOK).unsqueeze(1)
    ids = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0)
    allowed = (ids >= low) & (ids < low + CODEBOOK)
    allowed[:, EOS_SPEECH] |= (slot == 0) & (steps >= MIN_NEW_TOKENS)
    allowed |= ~constrained.to(device=logits.device, dtype=torch.bool).unsqueeze(1)
    return logits.masked_fill_(~allowed, float("-inf"))


class AudioTokenMask:
    """The processor's state and work, without vLLM: which request slots are constrained
    (set as requests enter, copied to the device once per admitting step) and the mask
    for one step's logits rows."""

    def __init__(self, max_num_reqs: int, device: torch.device | str) -> None:
        import torch

        self.host = torch.zeros(max_num_reqs, dtype=torch.bool)
        self.constrained = torch.zeros(max_num_reqs, dtype=torch.bool, device=device)
        self._staged = False

    def add(self, slot: int, constrained: bool) -> bool:
        """A request enters `slot`: every field of the slot is (re)set, slots are reused."""
        self.host[slot] = constrained
        self._staged = True
        return constrained

    def flush(self) -> None:
        """Copy the staged slot flags to the device (a few hundred bytes, only on steps
        that admit requests; blocking, so the host array is never written under a copy)."""
        if self._staged:
            self.constrained.copy_(self.host)
            self._staged = False

    def apply(
        self,
        logits: torch.Tensor,
        row_slots: torch.Tensor,
        positions: torch.Tensor,
        prompt_lens: torch.Tensor,
    ) -> torch.Tensor:
        """Mask the rows: row r belongs to slot row_slots[r] and samples the token after
        sequence position positions[r], so its request has generated
        positions[r] + 1 - prompt_lens[slot] tokens."""
        slots = row_slots.long()
        steps = positions.long() + 1 - prompt_lens.to(positions.device).long()[slots]
        return audio_mask_rows(logits, steps, self.constrained[slots])


class _Maya1AudioTokensMethods:
    """The processor's methods (PROCESSOR_INTERFACE); `processor_class` puts them on
    vLLM's LogitsProcessor base. Kept apart so their signatures are checked without vLLM."""

    def __init__(self, vllm_config: Any, req_states: Any) -> None:
        self.req_states = req_states
        self.mask = AudioTokenMask(int(req_states.max_num_reqs), req_states.device)

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        value = (getattr(sampling_params, "extra_args", None) or {}).get(EXTRA_ARG, False)
        if not isinstance(value, bool):
            raise ValueError(f"extra_args[{EXTRA_ARG!r}] must be true or false")

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        extra = getattr(sampling_params, "extra_args", None) or {}
        return self.mask.add(req_idx, bool(extra.get(EXTRA_ARG, False)))

    def apply_staged_writes(self) -> None:
        self.mask.flush()

    def apply(self, logits: torch.Tensor, ctx: Any) -> torch.Tensor:
        return self.mask.apply(
            logits, ctx.expanded_idx_mapping, ctx.pos, self.req_states.prompt_len.gpu
        )


def method_parameters(cls: type) -> dict[str, tuple[str, ...]]:
    """Each PROCESSOR_INTERFACE method of `cls` and its parameter names after self/cls."""
    found = {}
    for name in PROCESSOR_INTERFACE:
        params = list(inspect.signature(getattr(cls, name)).parameters)
        found[name] = tuple(params[1:] if params and params[0] == "self" else params)
    return found


@functools.cache
def processor_class() -> type:
    """Maya1AudioTokens: vLLM's Model Runner V2 LogitsProcessor with our methods (imports
    vLLM). One class object for the process, importable by PROCESSOR_FQCN."""
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

    cls = type(PROCESSOR_NAME, (_Maya1AudioTokensMethods, LogitsProcessor), {})
    cls.__module__, cls.__qualname__ = __name__, PROCESSOR_NAME  # pickled by reference
    cls.__doc__ = "Restricts requests that ask for it (extra_args) to their slot's audio codes."
    return cls


def __getattr__(name: str) -> Any:
    # vLLM loads processors by "module:Class" (PROCESSOR_FQCN), also in its engine process;
    # the class is built on that first lookup, so importing this module needs no vLLM
    if name == PROCESSOR_NAME:
        return processor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class VllmBackend:
    """Generates audio tokens with vllm.LLM (loaded once, on the GPU)."""

    name = "vllm"

    def __init__(
        self,
        folder: Path,
        *,
        precision: str,
        device: str,
        max_model_len: int,
        gpu_memory_utilization: float,
    ) -> None:
        if precision not in VLLM_DTYPES:
            raise InputError(
                f"precision {precision} is not available with the vllm backend "
                "(use bf16/fp16, or maya1_backend=hf for int8)"
            )
        if not device.startswith("cuda"):
            raise InputError("the vllm backend needs a CUDA device (use maya1_backend=hf)")
        # vLLM's own switch: its V1 runner does not take this processor (0.32-0.33 only)
        if os.environ.get("VLLM_USE_V2_MODEL_RUNNER", "").lower() in ("0", "false"):
            raise InputError(
                "the vllm backend needs Model Runner V2: unset VLLM_USE_V2_MODEL_RUNNER"
            )
        from vllm import LLM

        self.max_model_len = max_model_len
        self.llm = LLM(
            model=str(folder),
            tokenizer=str(folder),
            dtype=VLLM_DTYPES[precision],
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            logits_processors=[PROCESSOR_FQCN],
        )

    def generate(
        self, prompts: Sequence[Sequence[int]], rows: Sequence[RowSampling]
    ) -> list[list[int]]:
        """Each row's tokens after SOS, without the stop token."""
        import torch
        from vllm import SamplingParams

        for ids, row in zip(prompts, rows, strict=True):
            if len(ids) + row.max_new_tokens > self.max_model_len:
                raise InputError(
                    f"a prompt of {len(ids)} tokens and {row.max_new_tokens} new tokens do not "
                    f"fit VOICEBATCH_MAYA1_VLLM_MAX_MODEL_LEN={self.max_model_len}"
                )
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
