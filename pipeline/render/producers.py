"""Several renderers of one job feeding one batching engine (embedded mode).

A dynamic batcher overlaps stage two of one batch (Maya1: SNAC decoding) with stage one of
the next only while a second batch is waiting; one renderer that leases a batch and waits
for its audio never gives it one. So when the engine sits behind a batcher the embedded
renderer runs two producers, each leasing its own chunks (under its own lease owner) and
both submitting into the same batcher. Distributed workers get the same effect from their
concurrent task threads.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import fields, replace

from pipeline.batching import BatchingEngine
from pipeline.engines import Engine
from pipeline.render.jobs import Notice, RenderGate, render_job
from pipeline.render.renderer import ChunkRenderer, ProgressCallback, RenderProgress, RenderStats

PRODUCERS_PER_BATCHER = 2


def producer_count(engine: Engine) -> int:
    """How many renderers should feed `engine` at once."""
    return PRODUCERS_PER_BATCHER if isinstance(engine, BatchingEngine) else 1


def combined(stats: Iterable[RenderStats]) -> RenderStats:
    """The sum of several renderers' stats (errors concatenated)."""
    total = RenderStats()
    for one in stats:
        for spec in fields(RenderStats):
            mine, theirs = getattr(total, spec.name), getattr(one, spec.name)
            setattr(total, spec.name, mine + theirs)
    return total


def render_job_concurrently(
    make_renderer: Callable[[], ChunkRenderer],
    job_id: uuid.UUID,
    *,
    producers: int,
    progress: ProgressCallback | None = None,
    notice: Notice | None = None,
) -> RenderStats:
    """`render_job` on `producers` threads at once; their stats combined.

    If one producer fails (or the caller is interrupted, Ctrl-C), the others stop after
    the batch they hold, hand back their leases, and the first failure is raised. They
    share one RenderGate: a chunk suspected of killing the process renders alone."""
    if producers <= 1:
        return render_job(make_renderer(), job_id, progress=progress, notice=notice)
    renderers = [make_renderer() for _ in range(producers)]
    gate = RenderGate()
    lock = threading.Lock()

    def report(update: RenderProgress) -> None:
        if progress is None:
            return
        with lock:
            progress(replace(update, stats=combined(r.stats for r in renderers)))

    with ThreadPoolExecutor(producers, thread_name_prefix="producer") as pool:
        futures = [
            pool.submit(render_job, r, job_id, progress=report, notice=notice, gate=gate)
            for r in renderers
        ]
        try:
            # the first failure, whichever producer has it, stops the others at once
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in (*done, *futures):
                future.result()
        except BaseException:
            for renderer in renderers:
                renderer.stopping.set()
            raise
    return combined(r.stats for r in renderers)
