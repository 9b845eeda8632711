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

The cache travels under the keyword the model's forward names (`cache` from transformers
5.24, `past_key_values` before): a name the forward does not know vanishes into its
**kwargs, and every step then decodes one token with no context. At construction a short
KV-parity self-check (`check_cache`; pipeline/engines/maya1/parity.py is the public face
the benchmark uses) refuses a model whose cache is not used.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.engines.maya1.sampling import AudioSampler, RowSampling
from pipeline.engines.maya1.tokens import (
    EOS_SPEECH,
    PROMPT_PREFIX,
    PROMPT_SUFFIX,
    SLOTS,
    left_pad,
    slot_range,
)
from pipeline.errors import EngineOutOfMemory, PermanentError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

COMPILED_CACHE_STEP = 256  # compiled runs round the cache length up to this many tokens
KEPT_CACHES = 4  # static caches kept for reuse (each holds batch x length KV memory)
# The forward's KV cache keyword, newest first: transformers 5.24 renamed past_key_values.
CACHE_KEYWORDS = ("cache", "past_key_values")
NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
PARITY_BLOCK = 256  # positions whose logit differences are computed at once
# The load-time self-check: two prompts of different lengths (one left-padded).
SELF_CHECK_PROMPTS = (
    (*PROMPT_PREFIX, *range(300, 306), *PROMPT_SUFFIX),
    (*PROMPT_PREFIX, *range(400, 413), *PROMPT_SUFFIX),
)
SELF_CHECK_STEPS = SLOTS + 1  # a frame and the next one's first token: ~0.5 s on a CPU
# Largest max |logit difference| the self-check accepts per weight dtype. fp32 agrees to
# ~1e-6; half precisions round differently in the two paths (one token at a time against
# the whole sequence), so their bound only catches a context-free decode, whose logits
# are off by whole units on a trained model. An empty cache is refused whatever the dtype.
SELF_CHECK_TOLERANCE = {"float32": 1e-3, "float64": 1e-3, "float16": 0.5, "bfloat16": 1.0}


class KvCacheBroken(PermanentError):
    """Cached decoding does not reproduce a full forward: the KV cache is not used."""


def cache_keyword_of(module: Any) -> str:
    """The keyword `module.forward` takes its KV cache by, read from its named parameters
    (a name that only **kwargs would take is an unknown, silently dropped)."""
    parameters = inspect.signature(module.forward).parameters
    for name in CACHE_KEYWORDS:
        if name in parameters and parameters[name].kind in NAMED:
            return name
    import transformers

    raise KvCacheBroken(
        f"maya1: {type(module).__name__}.forward takes no KV cache argument (cache= or "
        f"past_key_values=) under transformers {transformers.__version__}; install the range "
        "the voicebatch[maya1] extra names"
    )


@dataclass
class Decoding:
    """One batch's decoding state after its prefill: the KV cache, the attention mask over
    the whole cache (padding masked) and the next position of every row."""

    cache: Any
    attention: torch.Tensor
    position: torch.Tensor


class HFBackend:
    """Generates audio tokens for a batch of prompts with a transformers causal LM."""

    name = "hf"

    def __init__(
        self,
        model: Any,
        *,
        pad_id: int,
        compile: bool = False,
        reuse_caches: bool | None = None,
        self_check: bool = True,
        cache_keyword: str | None = None,
    ) -> None:
        """`cache_keyword`: the forward's KV cache argument; None reads it from the
        forward's signature. `self_check`: refuse (KvCacheBroken) a model whose cached
        decoding does not match a full forward."""
        import torch

        self.model = model
        self.pad_id = pad_id
        self.cache_keyword = cache_keyword or cache_keyword_of(model.model)
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
        if self_check:
            self.check_cache()  # under a second; before any request is taken

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
            use_cache=True,
            **{self.cache_keyword: cache},
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

    def slot_logits(self, hidden: torch.Tensor, step: int) -> torch.Tensor:
        """The logits (B, 4096) of the audio tokens of generated position `step`'s slot."""
        import torch.nn.functional as F

        low, high = slot_range(step % SLOTS)
        if self._head_weight is None:
            logits: torch.Tensor = self.model.lm_head(hidden)[:, low:high]
            return logits
        return F.linear(hidden, self._head_weight[low:high])

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

    def _cache(self, batch: int, length: int, *, keep: bool = True) -> Any:
        """A static KV cache for this shape: a kept one, reset, when caches are reused
        (and `keep`: a check's one-off shape is not worth keeping)."""
        from transformers import StaticCache

        if not (self.reuse_caches and keep):
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
        batch = len(padded)
        steps = max(row.max_new_tokens for row in rows)
        device = self.device
        hidden, state = self.prefill(padded, pads, steps)
        limits = torch.tensor([row.max_new_tokens for row in rows], device=device)
        sampler = AudioSampler(rows, device)
        generated = torch.full((batch, steps), EOS_SPEECH, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)

        for step in range(steps):
            chosen = sampler.choose(self._scores(sampler, hidden, step), step)
            tokens = torch.where(done, EOS_SPEECH, chosen)
            generated[:, step] = tokens
            done |= (tokens == EOS_SPEECH) | (limits <= step + 1)
            # a host sync per frame, not per token: rows run at most 6 tokens past their end
            if step % SLOTS == SLOTS - 1 and bool(done.all()):
                break
            if step + 1 < steps:
                hidden = self.advance(state, tokens)
        return _rows(generated.cpu().tolist(), rows)

    def prefill(
        self,
        padded: Sequence[Sequence[int]],
        pads: Sequence[int],
        steps: int,
        *,
        keep_cache: bool = True,
    ) -> tuple[torch.Tensor, Decoding]:
        """Run left-padded prompts through the model into a cache with room for `steps`
        more tokens: the last position's hidden state (B, hidden) and the state to decode
        from. The prefill is never compiled: its shape changes with every batch."""
        import torch

        width = len(padded[0])
        cache_len = width + steps
        if self.compiled:
            cache_len = -(-cache_len // COMPILED_CACHE_STEP) * COMPILED_CACHE_STEP
        device = self.device
        cache = self._cache(len(padded), cache_len, keep=keep_cache)
        pad = torch.tensor(list(pads), device=device).unsqueeze(1)
        columns = torch.arange(cache_len, device=device).unsqueeze(0)
        attention = (columns >= pad).long()  # (B, cache_len): padding masked, the rest causal
        positions = (columns[:, :width] - pad).clamp(min=0)  # RoPE positions start at each SOH
        hidden = self._forward(torch.tensor(padded, device=device), attention, positions, cache)
        return hidden, Decoding(cache, attention, positions[:, -1:] + 1)

    def advance(
        self, state: Decoding, tokens: torch.Tensor, *, compiled: bool = True
    ) -> torch.Tensor:
        """Feed one token per row (B,) through the cache: the new hidden state (B, hidden).
        `compiled=False` skips torch.compile (a check's one-off shape is not worth a
        compile and a CUDA graph); both paths pass the cache the same way."""
        step = self._step if compiled else self._forward
        hidden = step(tokens.unsqueeze(1), state.attention, state.position, state.cache)
        state.position = state.position + 1
        return hidden

    def check_cache(
        self,
        prompts: Sequence[Sequence[int]] = SELF_CHECK_PROMPTS,
        steps: int = SELF_CHECK_STEPS,
        tolerance: float | None = None,
    ) -> None:
        """Raise KvCacheBroken (one line) when cached decoding of `prompts` does not
        reproduce a full forward within `tolerance` (None: SELF_CHECK_TOLERANCE for the
        model's dtype), or leaves the cache empty. With no arguments: the load-time
        self-check."""
        if tolerance is None:
            dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
            tolerance = SELF_CHECK_TOLERANCE.get(dtype, SELF_CHECK_TOLERANCE["bfloat16"])
        difference, cached = self.kv_parity(prompts, steps)
        width = max(len(prompt) for prompt in prompts)
        if cached < width:
            raise KvCacheBroken(
                f"maya1: the model ignored its KV cache (it holds {cached} of {width} prompt "
                f"tokens after the prefill; forward keyword {self.cache_keyword!r}): cached "
                "decoding would lose all context; install the transformers range the "
                "voicebatch[maya1] extra names"
            )
        if not difference <= tolerance:  # NaN fails too
            raise KvCacheBroken(
                f"maya1: cached decoding differs from a full forward by {difference:.3g} in the "
                f"logits (tolerance {tolerance:g}, {steps} steps, keyword "
                f"{self.cache_keyword!r}): the KV cache is not used correctly"
            )

    def kv_parity(self, prompts: Sequence[Sequence[int]], steps: int) -> tuple[float, int]:
        """(the largest |logit difference| between `steps` tokens of cached batched
        decoding of left-padded `prompts` and one full forward over prompts plus those
        tokens, the tokens the cache held after the prefill). Each step feeds back its
        slot's most likely audio token, as real decoding would write."""
        import torch

        if steps < 1 or not prompts or min(len(prompt) for prompt in prompts) < 1:
            raise ValueError("kv parity needs at least one step and non-empty prompts")
        model = self.model
        padded, pads = left_pad(prompts, self.pad_id)
        width = len(padded[0])
        with torch.inference_mode():
            hidden, state = self.prefill(padded, pads, steps, keep_cache=False)
            cached = int(state.cache.get_seq_length())
            states = [hidden]
            fed: list[torch.Tensor] = []
            for step in range(steps - 1):
                token = self.slot_logits(hidden, step).argmax(dim=-1) + slot_range(step % SLOTS)[0]
                fed.append(token)
                hidden = self.advance(state, token, compiled=False)
                states.append(hidden)
            device = self.device
            ids = torch.tensor(padded, device=device)
            if fed:
                ids = torch.cat([ids, torch.stack(fed, dim=1)], dim=1)
            pad = torch.tensor(pads, device=device).unsqueeze(1)
            columns = torch.arange(ids.shape[1], device=device).unsqueeze(0)
            full = model.model(
                input_ids=ids,
                attention_mask=(columns >= pad).long(),
                position_ids=(columns - pad).clamp(min=0),
                use_cache=False,
            ).last_hidden_state[:, width - 1 :]
            # The LM head is linear: the logits differ by the head applied to the hidden
            # states' difference, one pass over the head's weight per block of positions
            # (plus one for a bias), not two per step.
            delta = (torch.stack(states, dim=1) - full).reshape(-1, full.shape[-1])
            bias = model.lm_head(torch.zeros_like(delta[:1])).float()
            worst = 0.0
            for block in delta.split(PARITY_BLOCK):
                difference = (model.lm_head(block).float() - bias).abs().max()
                if difference.isnan():
                    return float("nan"), cached
                worst = max(worst, float(difference))
        return worst, cached


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
