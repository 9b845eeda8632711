"""Aligning what was heard with what should have been said, token by token.

difflib's matcher finds the longest runs in common (linear enough for a chapter of
thousands of words, where a full edit-distance table would not be); the stretches between
runs pair up as substitutions, and what is left over is deleted (said but not heard) or
inserted (heard but not in the text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher


@dataclass(frozen=True)
class Alignment:
    """`heard[i]`: the hypothesis index paired with reference token i (None: deleted);
    `exact[i]`: whether that pair is the same token; `inserted`: hypothesis indexes paired
    with nothing, each with the reference index it follows (-1: before the first)."""

    heard: list[int | None]
    exact: list[bool]
    inserted: list[tuple[int, int]]


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> Alignment:
    """Pair reference tokens with hypothesis tokens (see `Alignment`)."""
    heard: list[int | None] = [None] * len(reference)
    exact = [False] * len(reference)
    inserted: list[tuple[int, int]] = []
    matcher = SequenceMatcher(None, list(reference), list(hypothesis), autojunk=False)
    for op, r0, r1, h0, h1 in matcher.get_opcodes():
        if op == "equal":
            for offset in range(r1 - r0):
                heard[r0 + offset], exact[r0 + offset] = h0 + offset, True
            continue
        paired = min(r1 - r0, h1 - h0)  # replace: substitutions, then the rest
        for offset in range(paired):
            heard[r0 + offset] = h0 + offset
        inserted.extend((h, r0 + paired - 1) for h in range(h0 + paired, h1))
    return Alignment(heard, exact, inserted)
