"""The token backend interface: what the Maya1 engine needs of hf and vllm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipeline.engines.maya1.sampling import RowSampling


class TokenBackend(Protocol):
    """Generates audio tokens after SOS for a batch of prompts (hf or vllm)."""

    name: str

    def generate(
        self, prompts: Sequence[Sequence[int]], rows: Sequence[RowSampling]
    ) -> list[list[int]]:
        """Each row's tokens after SOS, without the stop token."""
        ...
