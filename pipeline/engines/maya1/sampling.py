"""Constrained, per-request sampling for Maya1's audio tokens.

After SOS a request may only write audio tokens of the slot its position calls for
(position % 7) and, at a frame boundary once it has written at least 28 tokens, the stop
token: otherwise the model can start speaking the description, or end mid-frame. Every row
has its own temperature, top-p, repetition penalty and seed. A row's random numbers come
from its own generator, drawn up front, so its tokens do not depend on its batch-mates.

All rows of a batch start generating at the same step (prompts are left-padded), so the
allowed slot is the same for the whole batch at each step: sampling runs on the 4096
candidates of that slot (+ the stop token), not the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.engines.maya1.tokens import CODEBOOK, EOS_SPEECH, MIN_NEW_TOKENS, SLOTS, slot_range

if TYPE_CHECKING:
    import torch

REFERENCE_TEMPERATURE = 0.4
REFERENCE_TOP_P = 0.9
REFERENCE_REPETITION_PENALTY = 1.1


@dataclass(frozen=True)
class RowSampling:
    """How one request samples: its parameters, its seed and its token limit."""

    seed: int
    max_new_tokens: int
    temperature: float = REFERENCE_TEMPERATURE
    top_p: float = REFERENCE_TOP_P
    repetition_penalty: float = REFERENCE_REPETITION_PENALTY
    # no stop before this many tokens (at least MIN_NEW_TOKENS); benchmarks force a length
    # with min_new_tokens == max_new_tokens so every configuration does the same work
    min_new_tokens: int = MIN_NEW_TOKENS


def stop_allowed(step: int) -> bool:
    """Whether the stop token may be written as generated token number `step` (0-based):
    only between frames, and never before MIN_NEW_TOKENS."""
    return step % SLOTS == 0 and step >= MIN_NEW_TOKENS


class AudioSampler:
    """Samples one token per row per step from the model's last-position logits."""

    def __init__(self, rows: Sequence[RowSampling], device: torch.device | str) -> None:
        import torch

        self.device = torch.device(device)
        self.steps = max(row.max_new_tokens for row in rows)
        self.temperature = self._column([row.temperature for row in rows])
        self.top_p = self._column([row.top_p for row in rows])
        self.penalty = self._column([row.repetition_penalty for row in rows])
        self.greedy = self.temperature[:, 0] <= 0
        self.min_tokens = torch.tensor(
            [max(row.min_new_tokens, MIN_NEW_TOKENS) for row in rows], device=self.device
        )
        # one uniform per row and step, from the row's own CPU generator: the same seed gives
        # the same draws on any device and in any batch
        self.uniforms = torch.stack(
            [
                torch.rand(self.steps, generator=torch.Generator().manual_seed(row.seed))
                for row in rows
            ]
        ).to(self.device)
        self.seen = torch.zeros(len(rows), SLOTS, CODEBOOK, dtype=torch.bool, device=self.device)

    def _column(self, values: Sequence[float]) -> torch.Tensor:
        import torch

        return torch.tensor(values, dtype=torch.float32, device=self.device).unsqueeze(1)

    def candidates(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """The allowed candidates' logits (B, 4096 [+1 stop]) with the repetition penalty
        applied, in float32, from whole-vocabulary logits (B, vocab)."""
        low, high = slot_range(step % SLOTS)
        return self.narrow_candidates(
            logits[:, low:high], logits[:, EOS_SPEECH : EOS_SPEECH + 1], step
        )

    def narrow_candidates(
        self, audio_logits: torch.Tensor, stop_logits: torch.Tensor, step: int
    ) -> torch.Tensor:
        """`candidates` from just the slot's 4096 logits (B, 4096) and the stop token's
        (B, 1): all a backend needs to compute of the LM head."""
        import torch

        slot = step % SLOTS
        audio = audio_logits.float()
        penalised = torch.where(audio > 0, audio / self.penalty, audio * self.penalty)
        audio = torch.where(self.seen[:, slot], penalised, audio)
        if stop_allowed(step):
            stop = stop_logits.float()
            early = (self.min_tokens > step).unsqueeze(1)
            stop = torch.where(early, torch.full_like(stop, float("-inf")), stop)
            audio = torch.cat([audio, stop], dim=1)
        return audio

    def step(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Token ids (B,) for generated position `step`, from logits (B, vocab)."""
        return self.choose(self.candidates(logits, step), step)

    def choose(self, scores: torch.Tensor, step: int) -> torch.Tensor:
        """Token ids (B,) for generated position `step`, from `candidates` scores."""
        import torch

        slot = step % SLOTS
        low, _ = slot_range(slot)
        choice = self._sample(scores, self.uniforms[:, step])
        if self.greedy.any():
            choice = torch.where(self.greedy, scores.argmax(dim=1), choice)
        is_stop = choice == CODEBOOK
        rows = torch.arange(len(choice), device=self.device)
        self.seen[rows[~is_stop], slot, choice[~is_stop]] = True
        return torch.where(is_stop, torch.full_like(choice, EOS_SPEECH), choice + low)

    def _sample(self, scores: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Top-p sampling by inverse CDF with one given uniform per row."""
        import torch

        temperature = self.temperature.clamp(min=1e-5)
        probs = torch.softmax(scores / temperature, dim=1)
        sorted_probs, order = torch.sort(probs, dim=1, descending=True, stable=True)
        cumulative = sorted_probs.cumsum(dim=1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        sorted_probs = torch.where(cumulative - sorted_probs >= self.top_p, 0.0, sorted_probs)
        cumulative = sorted_probs.cumsum(dim=1)
        target = uniforms.unsqueeze(1) * cumulative[:, -1:]
        index = torch.searchsorted(cumulative, target, right=True).clamp(max=scores.shape[1] - 1)
        return order.gather(1, index).squeeze(1)
