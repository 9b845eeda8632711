"""The message driver (distributed mode): render the chunks one message names, then
claim the items they finished for assembly, exactly once across all workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from pipeline.errors import EngineMismatch, HandedBack, InputError, RecordGone, RetryableError
from pipeline.render.renderer import ChunkRenderer, RenderStats
from pipeline.state import scoped, store
from pipeline.state.db import transaction
from pipeline.state.models import utcnow
from pipeline.state.store import ChunkLease


@dataclass(frozen=True)
class ChunkTaskOutcome:
    """What rendering the chunks a message named left to do next."""

    ready_items: list[uuid.UUID]  # claimed for assembly by this call: assemble each once
    retry_in: float | None  # some chunks are not final yet: run the message again then
    stats: RenderStats


def render_chunk_ids(
    renderer: ChunkRenderer, *, job_id: uuid.UUID, chunk_ids: Sequence[uuid.UUID]
) -> ChunkTaskOutcome:
    """Render the named chunks of a job (distributed mode: one render message).

    Only chunks that are pending, or whose lease expired, are leased; the rest are done,
    failed or in someone else's hands, so a duplicate message does nothing. Afterwards
    every item whose last chunk is now final is claimed for assembly, exactly once across
    all workers. Leases still held when this returns or raises are handed back.
    """
    with transaction(renderer.factory) as session:
        # Only the columns rendering needs, by primary key: never the job's items.
        job = scoped.render_target(session, job_id)
        if job.status.final:
            return ChunkTaskOutcome([], None, renderer.stats)
        store.start_job(session, job_id=job_id)
    voice, params = job.voice, job.params
    ttl = timedelta(seconds=renderer.settings.lease_seconds)
    engine = renderer.engine
    if (job.engine, job.model_version) != (engine.name, engine.model_version):
        # Render queues are per engine, so only a model version can differ here (workers
        # and API loaded different weights). No worker of this deployment can do these
        # chunks: they fail, recorded with why, instead of going round the queue.
        mismatch = EngineMismatch(
            f"job {job_id} was planned for engine {job.engine} ({job.model_version}); this "
            f"deployment's {engine.name} workers run {engine.model_version}: give the API and "
            "the workers the same model, then retry the job"
        )
        renderer.fail_chunks(_lease_all(renderer, job_id, chunk_ids, ttl), mismatch)
        return _after_render(renderer, job_id=job_id, chunk_ids=chunk_ids)

    def lease(limit: int) -> list[ChunkLease]:
        return _lease_all(renderer, job_id, chunk_ids, ttl, limit=limit)

    def render(leases: list[ChunkLease]) -> None:
        try:
            with renderer.heartbeat():
                renderer.render_leases(leases, voice=voice, params=params)
        except InputError as exc:
            if isinstance(exc, RecordGone):
                raise
            # Bad input met during the work (storage refusing access, a bucket that does
            # not exist, an invalid key): retrying cannot fix it, so the chunks still held
            # fail with its message, and the message does not go round the queue.
            renderer.fail_chunks(leases, exc)

    try:
        leases = lease(len(chunk_ids))
        if any(held.attempts > 1 for held in leases):
            # These chunks were leased before and never finished: their renderer may
            # have died of one of them. Go one at a time, committing each, so a chunk
            # that kills its process takes only its own attempts with it.
            with transaction(renderer.factory) as session:
                store.release_leases(session, owner=renderer.owner)
            while leases := lease(1):
                render(leases)
        elif leases:
            render(leases)
    finally:
        with transaction(renderer.factory) as session:
            store.release_leases(session, owner=renderer.owner)
    return _after_render(renderer, job_id=job_id, chunk_ids=chunk_ids)


def _lease_all(
    renderer: ChunkRenderer,
    job_id: uuid.UUID,
    chunk_ids: Sequence[uuid.UUID],
    ttl: timedelta,
    *,
    limit: int | None = None,
) -> list[ChunkLease]:
    with transaction(renderer.factory) as session:
        return store.lease_chunks(
            session,
            job_id=job_id,
            owner=renderer.owner,
            limit=len(chunk_ids) if limit is None else limit,
            ttl=ttl,
            max_attempts=renderer.settings.max_attempts,
            chunk_ids=chunk_ids,
        )


def _after_render(
    renderer: ChunkRenderer, *, job_id: uuid.UUID, chunk_ids: Sequence[uuid.UUID]
) -> ChunkTaskOutcome:
    """Claim the items these chunks finished, and say when to look again at the chunks
    not final yet. Every query is by the message's chunk and item ids."""
    with transaction(renderer.factory) as session:
        items = store.chunk_items(session, chunk_ids=chunk_ids)
        ready = store.claim_ready_items(session, job_id=job_id, item_ids=items)
        unfinished = store.open_among(session, chunk_ids=chunk_ids)
    retry_in: float | None = None
    if unfinished.pending:
        retry_in = max(renderer.backoff, 0.5)
    elif unfinished.leased:
        # Held by someone else: a duplicate of this message at work, or a worker that died
        # with the lease. Look again shortly, and take the chunks over once the lease runs
        # out; the message is done only when every chunk it names is final.
        left = (
            (unfinished.first_expiry - utcnow()).total_seconds() if unfinished.first_expiry else 0.0
        )
        retry_in = min(2.0, max(0.2, left + 0.1))
    return ChunkTaskOutcome(ready, retry_in, renderer.stats)


def render_message(
    renderer: ChunkRenderer,
    *,
    job_id: uuid.UUID,
    chunk_ids: Sequence[uuid.UUID],
    assemble: Callable[[uuid.UUID, list[uuid.UUID]], None],
    stopping: threading.Event,
) -> None:
    """Render the chunks one message names until every one is final, handing the items
    they finish to `assemble(job_id, item_ids)` as they are claimed.

    Chunks that went back to pending (a retryable failure) or that someone else holds (a
    duplicate of this message, or a dead worker's lease) are looked at again until every
    chunk is final; max_attempts stops a chunk that keeps failing. Raises HandedBack when
    `stopping` is set meanwhile, and RetryableError when the chunks are still not final
    after every attempt's lease could have run out.
    """
    settings = renderer.settings
    deadline = time.monotonic() + settings.lease_seconds * (settings.max_attempts + 1) + 60
    while True:
        outcome = render_chunk_ids(renderer, job_id=job_id, chunk_ids=chunk_ids)
        if outcome.ready_items:
            # Published once, at the claim: an item whose message was lost is the
            # reconciler's to publish again (pipeline.state.assembly), never each turn.
            assemble(job_id, outcome.ready_items)
        if outcome.retry_in is None:
            return
        if stopping.is_set():
            raise HandedBack(f"worker stopping: chunks of job {job_id} handed back")
        if time.monotonic() > deadline:
            raise RetryableError(f"chunks of job {job_id} still not final; message requeued")
        time.sleep(outcome.retry_in)
