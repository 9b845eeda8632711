"""Job state helpers tests share: a job spec, a job, and leasing and completing chunks."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pipeline.state import store
from pipeline.state.db import transaction

TTL = timedelta(minutes=5)


def make_spec(
    chunks_per_item: tuple[int, ...] = (2, 3), fingerprint: str = "f" * 64
) -> store.JobSpec:
    items = tuple(
        store.ItemSpec(
            title=f"Chapter {i + 1}",
            chunks=tuple(
                store.ChunkSpec(f"text {i}.{j}", j == 0, f"{i:02d}{j:062d}") for j in range(n)
            ),
        )
        for i, n in enumerate(chunks_per_item)
    )
    return store.JobSpec(
        title="Book",
        source_name="book.md",
        source_sha256="0" * 64,
        fingerprint=fingerprint,
        engine="test-tone",
        voice="tone",
        model_version="1",
        output_format="wav",
        items=items,
    )


def new_job(db: sessionmaker[Session], **kwargs: object) -> uuid.UUID:
    with transaction(db) as session:
        job_id = store.create_job(session, spec=make_spec(**kwargs))  # type: ignore[arg-type]
        assert store.start_job(session, job_id=job_id)
    return job_id


def lease(
    db: sessionmaker[Session], job_id: uuid.UUID, owner: str, limit: int = 10, **kw: object
) -> list[store.ChunkLease]:
    with transaction(db) as session:
        return store.lease_chunks(
            session, job_id=job_id, owner=owner, limit=limit, ttl=TTL, max_attempts=3, **kw
        )  # type: ignore[arg-type]


def complete(db: sessionmaker[Session], chunk: store.ChunkLease, owner: str) -> bool:
    with transaction(db) as session:
        return store.complete_chunk(
            session,
            chunk_id=chunk.chunk_id,
            owner=owner,
            object_key="k",
            duration=1.5,
            sample_rate=22050,
        )
