"""Submitting jobs (distributed mode): a checked Document -> one job in one transaction
-> chunk ids to publish; a repeated Idempotency-Key gets the earlier job back.

Everything is checked before the job exists; a request that fails any check leaves
nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.keys import cover_key
from pipeline.audio.cover import Cover
from pipeline.config import Settings
from pipeline.engines import EngineInfo
from pipeline.errors import InputError
from pipeline.ingest import (
    ParsedSource,
)
from pipeline.plan.documents import FieldError, _speakable
from pipeline.plan.spec import build_spec, job_lexicon
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import Job, JobStatus
from pipeline.storage.base import ObjectStore
from pipeline.text.lexicon import Lexicon


@dataclass(frozen=True)
class SubmittedJob:
    job_id: uuid.UUID
    created: bool  # False: an earlier submit with the same Idempotency-Key made it
    status: JobStatus
    chunk_groups: list[list[uuid.UUID]]  # chunk ids to publish, one render message each


def _replay(
    session: Session, earlier: Job, parsed: ParsedSource, settings: Settings
) -> SubmittedJob:
    """The job an earlier submit with this Idempotency-Key made. Its chunks still waiting
    are handed back for publishing again (the first try may have lost some messages;
    a duplicate message changes nothing)."""
    if earlier.source_sha256 != parsed.source.sha256:
        raise FieldError(
            "Idempotency-Key", "was already used for a different request; use a new key"
        )
    groups = (
        []
        if earlier.status.final
        else store.chunk_groups(session, job_id=earlier.id, size=settings.task_chunks)
    )
    return SubmittedJob(earlier.id, False, earlier.status, groups)


def submit_job(
    factory: sessionmaker[Session],
    parsed: ParsedSource,
    *,
    engine: EngineInfo,
    settings: Settings,
    kind: str,
    owner_id: uuid.UUID,
    idempotency_key: str | None,
    output_base: str,
    cover: Cover | None = None,
    folder: Callable[[str], ObjectStore] | None = None,
    lexicon: Lexicon | None = None,
) -> SubmittedJob:
    """Create the job (or find the one this Idempotency-Key made) and its chunk groups.

    A cover is written into the job's output folder (`folder(output_uri)`) before the
    job exists, since the assemble workers read it from there; if the job is not
    created, the cover is removed again.
    """
    max_chars = min(settings.chunk_max_chars, engine.max_chunk_chars)
    for index, chapter in enumerate(parsed.document.chapters):
        spoken = chapter.spoken_paragraphs(read_titles=settings.read_titles)
        if not _speakable("\n\n".join(spoken), max_chars):
            where = "items" if kind == "catalogue" else "chapters"
            raise FieldError(f"{where}[{index}]", "has no text to speak")
    if idempotency_key is not None:
        with transaction(factory) as session:
            earlier = store.find_idempotent_job(session, owner_id=owner_id, key=idempotency_key)
            if earlier is not None:
                return _replay(session, earlier, parsed, settings)
    job_id = uuid.uuid4()
    output_uri = f"{output_base.rstrip('/')}/jobs/{job_id}"
    chosen_lexicon = job_lexicon(settings, lexicon)
    try:
        spec = build_spec(
            parsed.document,
            parsed.source,
            engine=engine,
            settings=settings,
            output_uri=output_uri,
            kind=kind,
            cover=cover,
            lexicon=chosen_lexicon,
        )
    except InputError as exc:
        if isinstance(exc, FieldError) or kind != "catalogue":
            raise
        # An item's file name: name the entry (JSON items) or the uploaded file.
        where, _, problem = exc.message.partition(": ")
        if where.startswith("items["):
            raise FieldError(f"{where}.id", problem) from exc
        raise FieldError("file", exc.message) from exc
    spec = replace(spec, owner_id=owner_id, idempotency_key=idempotency_key)
    cover_folder = None
    if cover is not None:
        if folder is None:
            raise ValueError("submit_job needs `folder` to store a cover")
        cover_folder = folder(output_uri)
        cover_folder.put(cover_key(cover), cover.data, content_type=cover.mime_type)
    try:
        with transaction(factory) as session:
            store.create_job(session, spec=spec, job_id=job_id)
            groups = store.chunk_groups(session, job_id=job_id, size=settings.task_chunks)
    except BaseException as exc:
        if cover_folder is not None and cover is not None:
            cover_folder.delete(cover_key(cover))  # no job: nothing of it is left behind
        if not isinstance(exc, IntegrityError) or idempotency_key is None:
            raise
        # The same key, submitted twice at the same moment: the first one won.
        with transaction(factory) as session:
            earlier = store.find_idempotent_job(session, owner_id=owner_id, key=idempotency_key)
            if earlier is None:
                raise
            return _replay(session, earlier, parsed, settings)
    return SubmittedJob(job_id, True, JobStatus.PENDING, groups)
