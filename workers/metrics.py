"""Prometheus metrics of the workers, served on --metrics-port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHUNKS = Counter(
    "voicebatch_chunks_total",
    "Chunks finished by this worker, by outcome (rendered, cached, failed, lost).",
    ["outcome"],
)
AUDIO_SECONDS = Counter("voicebatch_audio_seconds_total", "Seconds of audio rendered.")
ENGINE_SECONDS = Counter("voicebatch_engine_seconds_total", "Wall time spent in the engine.")
TASK_SECONDS = Histogram(
    "voicebatch_task_seconds",
    "Task run time by task.",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
ITEMS = Counter("voicebatch_items_total", "Items assembled, by outcome.", ["outcome"])
JOBS = Counter("voicebatch_jobs_finished_total", "Jobs finalized, by final status.", ["status"])
SPOT_NOTICES = Counter(
    "voicebatch_spot_notices_total", "Spot interruption notices seen.", ["provider", "kind"]
)
TASK_RETRIES = Counter(
    "voicebatch_task_retries_total",
    "Passing trouble (database, storage, broker) a task tried again in place, by task.",
    ["task"],
)
BATCH_SPLITS = Counter(
    "voicebatch_oom_batch_splits_total", "Engine batches halved after running out of memory."
)
# The dynamic batcher's totals since the process started (set after each render task; in
# prefork mode each child reports its own, summed by the multiprocess collector).
BATCHER_BATCHES = Gauge(
    "voicebatch_batcher_batches",
    "Engine batches the dynamic batcher formed.",
    multiprocess_mode="sum",
)
BATCHER_REQUESTS = Gauge(
    "voicebatch_batcher_requests",
    "Chunks the dynamic batcher handed to the engine (over batches: the mean batch size).",
    multiprocess_mode="sum",
)
BATCHER_STAGE_SECONDS = Gauge(
    "voicebatch_batcher_stage_seconds",
    "Engine time by stage (generate: LLM tokens; decode: SNAC), overlapped across batches.",
    ["stage"],
    multiprocess_mode="sum",
)
