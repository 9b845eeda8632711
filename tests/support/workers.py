"""Worker-side helpers tests share: a job whose render messages were never published."""

from __future__ import annotations

import uuid

from pipeline.engines import engine_info
from pipeline.plan.documents import document_from_chapters
from pipeline.plan.submit import submit_job
from workers.app import VoicebatchCelery


def new_job(app: VoicebatchCelery) -> uuid.UUID:
    parsed = document_from_chapters(
        "Book", [("One", "First. Second. Third."), ("Two", "Fourth sentence here.")]
    )
    settings = app.settings.model_copy(update={"chunk_max_chars": 40})
    return submit_job(
        app.context.resources.factory,
        parsed,
        engine=engine_info(settings),
        settings=settings,
        kind="book",
        owner_id=uuid.UUID(int=1),
        idempotency_key=None,
        output_base=settings.resolved_storage_url,
    ).job_id  # its messages were never published: "lost"
