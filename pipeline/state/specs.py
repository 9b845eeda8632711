"""What state is made from and reported as: the spec of a job to create (its items and
chunks), and a job's progress counts. Re-exported by pipeline.state.store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChunkSpec:
    text: str
    paragraph_start: bool
    content_hash: str


@dataclass(frozen=True)
class ItemSpec:
    title: str
    chunks: tuple[ChunkSpec, ...]
    voice: str | None = None  # catalogue items: a voice of their own (None: the job's)
    file_name: str | None = None  # catalogue items: the file name under items/


@dataclass(frozen=True)
class JobSpec:
    """Everything needed to create a job, its items and chunks in one transaction."""

    title: str
    source_name: str
    source_sha256: str
    fingerprint: str
    engine: str
    voice: str
    model_version: str
    output_format: str
    items: tuple[ItemSpec, ...]
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    author: str | None = None
    output_uri: str | None = None
    kind: str = "book"
    owner_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None  # where its final state is announced (a webhook)


@dataclass(frozen=True)
class JobProgress:
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    chunks_leased: int
    audio_seconds: float
    chunks_cached: int = 0  # done chunks whose audio an earlier identical chunk had made
    items_total: int = 0
    items_done: int = 0
    items_failed: int = 0

    @property
    def chunks_pending(self) -> int:
        return self.chunks_total - self.chunks_done - self.chunks_failed - self.chunks_leased

    @property
    def fraction(self) -> float:
        return (
            (self.chunks_done + self.chunks_failed) / self.chunks_total
            if self.chunks_total
            else 1.0
        )
