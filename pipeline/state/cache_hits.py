"""How many of a job's chunks a tenant may be told came from the cache (issue 20).

The renderer takes a chunk's audio from the content-addressed cache whoever rendered it
first; `Chunk.cache_hit` records that. Shown to a tenant as is, it would be an oracle:
tenant B could submit a sentence and learn from `cached: 1` that some other tenant had
rendered it. So the API reports a count that depends on the tenant's own jobs only: a
done chunk counts as cached when the same content (same hash: text, voice, engine,
settings) is done in an earlier chunk of the same job or in an earlier job of the same
owner. The sharing itself is unchanged (one rendering for everyone), and nothing here
writes. Part of the state module, beside `store`; read-only.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BindParameter, Select, and_, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from pipeline.state.models import Chunk, ChunkStatus, Job


def _count(*, owner_known: bool) -> Select[Any]:
    """The count as one statement with bound parameters, built once: the API asks it for
    every job it shows, and building a statement this size costs more than running it."""
    job_id: BindParameter[uuid.UUID] = bindparam("job_id")
    owner_id: BindParameter[uuid.UUID] = bindparam("owner_id")
    created = select(Job.created_at).where(Job.id == job_id).scalar_subquery()
    earlier = aliased(Chunk)
    earlier_job = aliased(Job)
    same_owner_earlier_job = select(earlier_job.id).where(
        earlier_job.owner_id == owner_id if owner_known else earlier_job.owner_id.is_(None),
        earlier_job.created_at < created,
    )
    seen_before = exists().where(
        earlier.content_hash == Chunk.content_hash,
        earlier.status == ChunkStatus.DONE,
        or_(
            and_(earlier.job_id == job_id, earlier.seq < Chunk.seq),
            earlier.job_id.in_(same_owner_earlier_job),
        ),
    )
    # Only chunks served from the cache are candidates: a chunk rendered for this job
    # was not cached, whoever asks, and most jobs have few hits to look into.
    return select(func.count()).where(
        Chunk.job_id == job_id,
        Chunk.status == ChunkStatus.DONE,
        Chunk.cache_hit.is_(True),
        seen_before,
    )


_OWNED = _count(owner_known=True)
_UNOWNED = _count(owner_known=False)


def own_cache_hits(session: Session, *, job_id: uuid.UUID, owner_id: uuid.UUID | None) -> int:
    """The done chunks of `job_id` whose content `owner_id` had already had rendered."""
    statement = _OWNED if owner_id is not None else _UNOWNED
    count: int | None = session.scalar(statement, {"job_id": job_id, "owner_id": owner_id})
    return int(count or 0)
