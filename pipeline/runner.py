"""One call that takes an input file all the way to finished audio: plan, render, assemble.

Used by `voicebatch render` (embedded mode) and by the benchmark. Distributed mode calls
the same three steps from separate tasks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.embedded import assemble_job
from pipeline.assemble.items import AssemblyResult
from pipeline.assemble.keys import cover_key
from pipeline.assemble.manifest import manifest_files, manifest_of_job
from pipeline.assemble.read_along import write_read_along
from pipeline.audio.cover import Cover
from pipeline.config import Settings
from pipeline.engines import (
    Engine,
)
from pipeline.errors import ChunkObjectsMissing
from pipeline.ingest import ParsedSource
from pipeline.plan.jobs import PlannedJob, plan_job
from pipeline.plan.prepare import load_engine
from pipeline.qa.live import LiveQa
from pipeline.qa.results import record_job
from pipeline.render.jobs import Notice
from pipeline.render.producers import producer_count, render_job_concurrently
from pipeline.render.renderer import ChunkRenderer, ProgressCallback, RenderStats
from pipeline.stages import mark as mark_time
from pipeline.state.db import open_database
from pipeline.state.models import JobStatus
from pipeline.storage.base import ObjectStore
from pipeline.storage.factory import open_store
from pipeline.storage.local import LocalObjectStore


@dataclass(frozen=True)
class RenderOutcome:
    job: PlannedJob
    stats: RenderStats
    assembly: AssemblyResult | None
    output_dir: Path
    seconds: dict[str, float]
    read_along: str | None = None  # the read-along EPUB's key, when one was written
    qa: dict[str, Any] | None = None  # QA while rendering: the manifest's `qa` summary


@dataclass
class LocalRuntime:
    """Everything a render needs in one process: settings, database, chunk store, engine."""

    settings: Settings
    factory: sessionmaker[Session]
    chunk_store: ObjectStore
    engine: Engine | None = None

    @classmethod
    def open(cls, settings: Settings) -> LocalRuntime:
        return cls(
            settings,
            open_database(settings.resolved_database_url, migrate_sqlite=True),
            open_store(settings.resolved_storage_url, settings),
        )

    def load_engine(self) -> Engine:
        """The engine, loaded once; behind a dynamic batcher when settings ask for one."""
        if self.engine is None:
            self.engine = load_engine(self.settings)
        return self.engine


def outputs_current(output_store: ObjectStore, job_id: uuid.UUID) -> bool:
    """True if the folder holds this job's manifest and every file it lists.

    Another job may have written into the same folder since, or a file may be gone.
    """
    manifest = manifest_of_job(output_store, job_id)
    if manifest is None:
        return False
    try:
        files = [key for _, key in manifest_files(manifest)]
    except (AttributeError, TypeError):
        return False
    return all(isinstance(f, str) and output_store.exists(f) for f in files)


def render_file(
    runtime: LocalRuntime,
    parsed: ParsedSource,
    *,
    output_dir: Path,
    fresh: bool = False,
    progress: ProgressCallback | None = None,
    on_planned: Callable[[PlannedJob], None] | None = None,
    cover: Cover | None = None,
    notice: Notice | None = None,
) -> RenderOutcome:
    """Plan (or resume) the job for `parsed`, render what is missing, and assemble into
    output_dir. A cover is written into the folder first (cover.jpg or cover.png), where
    assembly reads it from, as workers read it from a job's folder in distributed mode.
    `notice` is told, in one line, what a previous run that crashed died on."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    engine = runtime.load_engine()
    timings["engine_load"] = time.perf_counter() - started
    mark_time("engine_load_done")
    output_dir = output_dir.expanduser().resolve()
    output_store = LocalObjectStore(output_dir)

    mark = time.perf_counter()
    planned = plan_job(
        runtime.factory,
        parsed,
        engine=engine,
        settings=runtime.settings,
        output_uri=output_dir.as_uri(),
        fresh=fresh,
        cover=cover,
    )
    if cover is not None:
        output_store.put(cover_key(cover), cover.data, content_type=cover.mime_type)
    timings["plan"] = time.perf_counter() - mark
    mark_time("plan_done")
    if on_planned is not None:
        on_planned(planned)

    mark = time.perf_counter()
    settings = runtime.settings
    # QA while rendering: one recogniser for every producer, loaded at the first check
    qa = LiveQa(settings.asr_model_dir, retries=settings.qa_retries) if settings.qa else None

    def renderer() -> ChunkRenderer:
        return ChunkRenderer(
            factory=runtime.factory,
            store_=runtime.chunk_store,
            engine=engine,
            settings=runtime.settings,
            qa=qa,
        )

    stats = render_job_concurrently(
        renderer,
        planned.job_id,
        producers=producer_count(engine),
        progress=progress,
        notice=notice,
    )
    timings["render"] = time.perf_counter() - mark
    mark_time("chunks_done")

    mark = time.perf_counter()
    assembly = None
    finished = planned.status in (JobStatus.DONE, JobStatus.PARTIALLY_FAILED, JobStatus.FAILED)
    if not (finished and stats.rendered == 0 and outputs_current(output_store, planned.job_id)):
        for _ in range(runtime.settings.max_attempts):
            try:
                assembly = assemble_job(
                    runtime.factory,
                    job_id=planned.job_id,
                    chunk_store=runtime.chunk_store,
                    output_store=output_store,
                    max_attempts=runtime.settings.max_attempts,
                )
                break
            except ChunkObjectsMissing:  # back to pending: render them again, then assemble
                stats = render_job_concurrently(
                    renderer,
                    planned.job_id,
                    producers=producer_count(engine),
                    progress=progress,
                    notice=notice,
                )
        else:
            raise ChunkObjectsMissing(f"chunk audio of job {planned.job_id} keeps vanishing")
    timings["assemble"] = time.perf_counter() - mark
    mark_time("assemble_done")
    qa_summary = None
    if qa is not None and assembly is not None:
        # before the read-along EPUB: it takes the word times QA puts in the timing files
        qa_summary = record_job(
            runtime.factory,
            job_id=planned.job_id,
            output_store_for=lambda _uri: output_store,
            model=qa.model,
        )
    read_along = None
    if runtime.settings.read_along and manifest_of_job(output_store, planned.job_id):
        mark = time.perf_counter()  # after assembly (and QA's word times) has written
        read_along = write_read_along(output_store, parsed.document, where=str(parsed.source.path))
        timings["read_along"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return RenderOutcome(planned, stats, assembly, output_dir, timings, read_along, qa_summary)
