"""The Hugging Face transformers backend: a batched decode loop over a static KV cache.

`generate` is written out rather than `model.generate(...)`: every row needs its own
sampling parameters, seed and token limit, and the logits constraint must know each
step's slot. Prompts are left-padded, so the whole batch starts generating at once; a row
that has stopped keeps its place (static shapes) and its later tokens are ignored. With
`compile=True` on CUDA the one-token decode step runs through torch.compile with CUDA
graphs ("reduce-overhead"), which removes the per-layer kernel-launch overhead that
dominates small-batch decoding. CUDA graphs replay fixed memory addresses, so compiled runs
round cache lengths up (few shapes) and keep one cache per (batch, length) shape, reset
between batches, instead of a fresh cache whose new tensors would force a re-capture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.engines.maya1.sampling import AudioSampler, RowSampling
from pipeline.engines.maya1.tokens import EOS_SPEECH, SLOTS, left_pad, slot_range
from pipeline.errors import EngineOutOfMemory

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

COMPILED_CACHE_STEP = 256  # compiled runs round the cache length up to this many tokens
KEPT_CACHES = 4  # static caches kept for reuse (each holds batch x length KV memory)


class HFBackend:
    """Generates audio tokens for a batch of prompts with a transformers causal LM."""

    name = "hf"

    def __init__(
        self, model: Any, *, pad_id: int, compile: bool = False, reuse_caches: bool | None = None
    ) -> None:
        import torch

        self.model = model
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.compiled = compile and self.device.type == "cuda"
        if compile and not self.compiled:
            log.info("maya1_compile applies to CUDA only; decoding on %s uncompiled", self.device)
        self.reuse_caches = self.compiled if reuse_caches is None else reuse_caches
        self._caches: dict[tuple[int, int], Any] = {}
        self._head_weight = self._head_rows()
        self._step: Callable[..., torch.Tensor] = (
            torch.compile(self._forward, mode="reduce-overhead", fullgraph=False)
            if self.compiled
            else self._forward
        )

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any,
    ) -> torch.Tensor:
        """The last position's hidden state (B, hidden); the LM head is applied apart."""
        out = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        )
        hidden: torch.Tensor = out.last_hidden_state[:, -1]
        return hidden

    def _head_rows(self) -> Any:
        """The LM head's weight as a plain tensor whose rows can be sliced, or None (a
        quantised head, whose rows this code does not slice)."""
        import torch

        head = self.model.lm_head
        weight = head.weight
        if type(weight.data) is not torch.Tensor or getattr(head, "bias", None) is not None:
            return None
        return weight.data

    def _scores(self, sampler: AudioSampler, hidden: torch.Tensor, step: int) -> torch.Tensor:
        """The sampler's candidates for `step`. Only the LM head rows of the slot's 4096
        audio tokens and of the stop token are multiplied: 4097 of Maya1's 156,940 rows,
        which is 15% of the 3B model's weight bytes read per step (and nearly all of a tiny
        model's compute) saved. A quantised head computes every row, then slices."""
        import torch.nn.functional as F

        weight = self._head_weight
        if weight is None:
            return sampler.candidates(self.model.lm_head(hidden), step)
        low, high = slot_range(step % SLOTS)
        audio = F.linear(hidden, weight[low:high])
        stop = F.linear(hidden, weight[EOS_SPEECH : EOS_SPEECH + 1])
        return sampler.narrow_candidates(audio, stop, step)

    def _cache(self, batch: int, length: int) -> Any:
        """A static KV cache for this shape: a kept one, reset, when caches are reused."""
        from transformers import StaticCache

        if not self.reuse_caches:
            return StaticCache(config=self.model.config, max_cache_len=length)
        cache = self._caches.pop((batch, length), None)
        if cache is None:
            while len(self._caches) >= KEPT_CACHES:
                self._caches.pop(next(iter(self._caches)))  # the least recently used
            cache = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            cache.reset()
        self._caches[(batch, length)] = cache
        return cache

    def generate(
        self, prompts: Sequence[Sequence[int]], rows: Sequence[RowSampling]
    ) -> list[list[int]]:
        """The tokens each row generated after SOS, without the stop token."""
        import torch

        try:
            with torch.inference_mode():
                return self._generate(prompts, rows)
        except torch.OutOfMemoryError as exc:
            self._caches.clear()  # kept caches are the first memory to give back
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise EngineOutOfMemory(f"maya1 batch of {len(prompts)} out of memory: {exc}") from exc

    def _generate(
        self, prompts: Sequence[Sequence[int]], rows: Sequence[RowSampling]
    ) -> list[list[int]]:
        import torch

        padded, pads = left_pad(prompts, self.pad_id)
        batch, width = len(padded), len(padded[0])
        steps = max(row.max_new_tokens for row in rows)
        cache_len = width + steps
        if self.compiled:
            cache_len = -(-cache_len // COMPILED_CACHE_STEP) * COMPILED_CACHE_STEP
        device = self.device
        cache = self._cache(batch, cache_len)
        pad = torch.tensor(pads, device=device).unsqueeze(1)
        columns = torch.arange(cache_len, device=device).unsqueeze(0)
        attention = (columns >= pad).long()  # (B, cache_len): padding masked, the rest causal
        positions = (columns[:, :width] - pad).clamp(min=0)  # RoPE positions start at each SOH
        limits = torch.tensor([row.max_new_tokens for row in rows], device=device)
        sampler = AudioSampler(rows, device)
        generated = torch.full((batch, steps), EOS_SPEECH, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)

        hidden = self._forward(
            torch.tensor(padded, device=device), attention, positions, cache
        )  # the prefill is never compiled: its shape changes with every batch
        position = positions[:, -1:] + 1
        for step in range(steps):
            chosen = sampler.choose(self._scores(sampler, hidden, step), step)
            tokens = torch.where(done, EOS_SPEECH, chosen)
            generated[:, step] = tokens
            done |= (tokens == EOS_SPEECH) | (limits <= step + 1)
            # a host sync per frame, not per token: rows run at most 6 tokens past their end
            if step % SLOTS == SLOTS - 1 and bool(done.all()):
                break
            if step + 1 < steps:
                hidden = self._step(tokens.unsqueeze(1), attention, position, cache)
                position = position + 1
        return _rows(generated.cpu().tolist(), rows)


def _rows(generated: list[list[int]], rows: Sequence[RowSampling]) -> list[list[int]]:
    out = []
    for tokens, row in zip(generated, rows, strict=True):
        tokens = tokens[: row.max_new_tokens]
        if EOS_SPEECH in tokens:
            tokens = tokens[: tokens.index(EOS_SPEECH)]
        else:
            log.warning(
                "maya1: a chunk used all %d tokens its text allows without ending its speech",
                row.max_new_tokens,
            )
        out.append(tokens)
    return out
