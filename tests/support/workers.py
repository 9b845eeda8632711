"""Worker-side helpers tests share: the settings a test's own message drivers run with,
a job submitted with its render messages never published, and a render of its chunks
by the worker's own driver, in the test's process."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, load_settings
from pipeline.engines import engine_info
from pipeline.plan.documents import ParsedSource, document_from_chapters
from pipeline.plan.submit import SubmittedJob, submit_job
from pipeline.render.messages import ChunkTaskOutcome, render_chunk_ids
from pipeline.render.renderer import ChunkRenderer
from workers.app import VoicebatchCelery
from workers.context import WorkerResources


def tone_settings(root: Path, **overrides: Any) -> Settings:
    """The test-tone engine writing WAV, its data folder and object store under `root`;
    `overrides` on top (a database, a broker, what the test is about)."""
    values: dict[str, Any] = {
        "engine": "test-tone",
        "data_dir": root / "data",
        "storage_url": str(root / "objects"),
        "output_format": "wav",
    }
    return load_settings(**(values | overrides))


def submit(
    factory: sessionmaker[Session],
    settings: Settings,
    parsed: ParsedSource,
    *,
    kind: str = "book",
    owner_id: uuid.UUID | None = None,
    **options: Any,
) -> SubmittedJob:
    """`parsed` submitted as the API would (by a new owner unless named; `options`:
    submit_job's others, such as folder or callback_url); its messages are not
    published."""
    return submit_job(
        factory,
        parsed,
        engine=engine_info(settings),
        settings=settings,
        kind=kind,
        owner_id=owner_id or uuid.uuid4(),
        idempotency_key=None,
        output_base=settings.resolved_storage_url,
        **options,
    )


def chunk_renderer(resources: WorkerResources, settings: Settings) -> ChunkRenderer:
    """The renderer a worker's render message uses, on its engine and store (no index)."""
    return ChunkRenderer(
        factory=resources.factory,
        store_=resources.chunk_store,
        engine=resources.engine,
        settings=settings,
        index=None,
    )


def render_ids(
    resources: WorkerResources,
    settings: Settings,
    job_id: uuid.UUID,
    chunk_ids: Sequence[uuid.UUID],
) -> ChunkTaskOutcome:
    """One render message's work on these chunks of the job, by the worker's driver."""
    renderer = chunk_renderer(resources, settings)
    return render_chunk_ids(renderer, job_id=job_id, chunk_ids=chunk_ids)


def new_job(app: VoicebatchCelery) -> uuid.UUID:
    parsed = document_from_chapters(
        "Book", [("One", "First. Second. Third."), ("Two", "Fourth sentence here.")]
    )
    settings = app.settings.model_copy(update={"chunk_max_chars": 40})
    factory = app.context.resources.factory
    # its messages were never published: "lost"
    return submit(factory, settings, parsed, owner_id=uuid.UUID(int=1)).job_id
