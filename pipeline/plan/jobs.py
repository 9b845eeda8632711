"""Planning (embedded mode): input file -> checked Document -> chunks -> one job in one
transaction, or the job this exact command made before (resume by fingerprint)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.cover import Cover
from pipeline.config import Settings
from pipeline.engines import Engine
from pipeline.errors import InputError
from pipeline.ingest import ParsedSource
from pipeline.plan.spec import build_spec, job_lexicon
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import JobStatus
from pipeline.text.lexicon import Lexicon


@dataclass(frozen=True)
class PlannedJob:
    job_id: uuid.UUID
    resumed: bool
    status: JobStatus
    chunks_total: int


def plan_job(
    factory: sessionmaker[Session],
    parsed: ParsedSource,
    *,
    engine: Engine,
    settings: Settings,
    output_uri: str | None,
    fresh: bool = False,
    cover: Cover | None = None,
    lexicon: Lexicon | None = None,
) -> PlannedJob:
    """Find the job this exact command made before (resume), or create it.

    `fresh` cancels the earlier job and starts a new one. A job that ended with failed
    chunks is reopened so that they are tried again.
    """
    source = parsed.source
    spec = build_spec(
        parsed.document,
        source,
        engine=engine,
        settings=settings,
        output_uri=output_uri,
        kind=parsed.document.kind,
        cover=cover,
        lexicon=job_lexicon(settings, lexicon),
    )
    if not spec.items:
        raise InputError(f"{source.path}: has no speakable text")
    try:
        with transaction(factory) as session:
            previous = store.find_resumable_job(session, fingerprint=spec.fingerprint)
            if previous is not None and fresh:
                store.cancel_job(session, job_id=previous.id)
                previous = None
            if previous is not None:
                store.retry_failed(session, job_id=previous.id)
                session.refresh(previous)
                return PlannedJob(previous.id, True, previous.status, previous.chunks_total)
            job_id = store.create_job(session, spec=spec)
            total = sum(len(item.chunks) for item in spec.items)
        return PlannedJob(job_id, False, JobStatus.PENDING, total)
    except IntegrityError:
        # The same command, started at the same moment, created the job first: join it.
        with transaction(factory) as session:
            winner = store.find_resumable_job(session, fingerprint=spec.fingerprint)
            if winner is None:
                raise
            return PlannedJob(winner.id, True, winner.status, winner.chunks_total)
