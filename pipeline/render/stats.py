"""What a render run did, and the progress it reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RenderStats:
    """What one render run did; `engine_seconds` is wall time inside engine calls."""

    rendered: int = 0
    cached: int = 0
    failed: int = 0
    lost: int = 0  # leases taken over by someone else before we could commit
    audio_seconds: float = 0.0
    engine_seconds: float = 0.0
    engine_calls: int = 0
    oom_splits: int = 0  # batches halved because the engine ran out of memory
    transient_retries: int = 0  # storage or database calls tried again in place
    # QA while rendering (pipeline.qa.live): takes checked, re-takes rendered, chunks
    # recorded still flagged, and every checked take's error rate and flags
    qa_checked: int = 0
    qa_retakes: int = 0
    qa_flagged: int = 0
    qa_error_rates: list[float] = field(default_factory=list)
    qa_flags: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RenderProgress:
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    audio_seconds_total: float
    stats: RenderStats


ProgressCallback = Callable[[RenderProgress], None]
