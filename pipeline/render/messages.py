"""The message driver (distributed mode): render the chunks one message names, then
claim the items they finished for assembly, exactly once across all workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pipeline.errors import HandedBack, InputError, RetryableError
from pipeline.render.renderer import ChunkRenderer, RenderStats
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus, utcnow
from pipeline.state.store import ChunkLease


@dataclass(frozen=True)
class ChunkTaskOutcome:
    """What rendering the chunks a message named left to do next."""

    ready_items: list[uuid.UUID]  # claimed for assembly by this call: assemble each once
    retry_in: float | None  # some chunks are not final yet: run the message again then
    stats: RenderStats
    # this message's items claimed for assembly (by this call or an earlier run of it
    # whose publish may have failed): publishing them again is harmless
    assembling: list[uuid.UUID] = field(default_factory=list)


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
        job = store.get_job(session, job_id)
        if job.status.final:
            return ChunkTaskOutcome([], None, renderer.stats)
        engine = renderer.engine
        if (job.engine, job.model_version) != (engine.name, engine.model_version):
            raise InputError(
                f"job {job_id} wants engine {job.engine} ({job.model_version}); this worker "
                f"runs {engine.name} ({engine.model_version})"
            )
        voice, params = job.voice, dict(job.params)
        store.start_job(session, job_id=job_id)
    ttl = timedelta(seconds=renderer.settings.lease_seconds)

    def lease(limit: int) -> list[ChunkLease]:
        with transaction(renderer.factory) as session:
            return store.lease_chunks(
                session,
                job_id=job_id,
                owner=renderer.owner,
                limit=limit,
                ttl=ttl,
                max_attempts=renderer.settings.max_attempts,
                chunk_ids=chunk_ids,
            )

    try:
        leases = lease(len(chunk_ids))
        if any(held.attempts > 1 for held in leases):
            # These chunks were leased before and never finished: their renderer may
            # have died of one of them. Go one at a time, committing each, so a chunk
            # that kills its process takes only its own attempts with it.
            with transaction(renderer.factory) as session:
                store.release_leases(session, owner=renderer.owner)
            while leases := lease(1):
                with renderer.heartbeat():
                    renderer.render_leases(leases, voice=voice, params=params)
        elif leases:
            with renderer.heartbeat():
                renderer.render_leases(leases, voice=voice, params=params)
    finally:
        with transaction(renderer.factory) as session:
            store.release_leases(session, owner=renderer.owner)
    with transaction(renderer.factory) as session:
        items = store.chunk_items(session, chunk_ids=chunk_ids)
        ready = store.claim_ready_items(session, job_id=job_id, item_ids=items)
        unfinished = store.open_among(session, chunk_ids=chunk_ids)
        waiting = [
            item.id
            for item in store.job_items(session, job_id=job_id)
            if item.id in set(items) and item.status == ItemStatus.ASSEMBLING
        ]
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
    return ChunkTaskOutcome(ready, retry_in, renderer.stats, waiting)


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
        if outcome.assembling:
            assemble(job_id, outcome.assembling)
        if outcome.retry_in is None:
            return
        if stopping.is_set():
            raise HandedBack(f"worker stopping: chunks of job {job_id} handed back")
        if time.monotonic() > deadline:
            raise RetryableError(f"chunks of job {job_id} still not final; message requeued")
        time.sleep(outcome.retry_in)
