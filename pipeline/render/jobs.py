"""The job driver (embedded mode): lease and render a job's chunks, a batch at a time,
until none is left to take; chunks a dead process of this host held are taken back at
once, chunks a live one holds are waited for."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from pipeline.render.leases import gone_from_this_host
from pipeline.render.renderer import ChunkRenderer, ProgressCallback, RenderProgress, RenderStats
from pipeline.state import store
from pipeline.state.db import transaction

log = logging.getLogger(__name__)


def job_progress(renderer: ChunkRenderer, job_id: uuid.UUID) -> RenderProgress:
    """Where the job stands, with what this renderer did so far."""
    with transaction(renderer.factory) as session:
        counts = store.job_progress(session, job_id=job_id)
    return RenderProgress(
        counts.chunks_total,
        counts.chunks_done,
        counts.chunks_failed,
        counts.audio_seconds,
        renderer.stats,
    )


def _wait_for_others(renderer: ChunkRenderer, job_id: uuid.UUID) -> bool:
    """Called when nothing is left to lease: True if the loop should go on.

    Chunks held by a process of this host that no longer exists (kill -9, a crash)
    are handed back at once, to be leased on the next turn; owners are named
    host:pid:nonce. While a live owner holds chunks, wait for it to finish them (or for
    its leases to expire, when lease_chunks takes them over).
    """
    with transaction(renderer.factory) as session:
        released = 0
        for owner in store.lease_owners(session, job_id=job_id):
            if gone_from_this_host(owner):
                log.info("taking back chunks held by %s, which is no longer running", owner)
                released += store.release_leases(session, owner=owner)
        if released:
            return True
        held = bool(store.lease_owners(session, job_id=job_id))
    if held:
        time.sleep(renderer.poll_seconds)
    return held


def render_job(
    renderer: ChunkRenderer, job_id: uuid.UUID, *, progress: ProgressCallback | None = None
) -> RenderStats:
    """Lease and render this job's chunks until none is left to take.

    On any exit (Ctrl-C included) the leases still held are handed back, so the next
    run or another worker picks them up at once.
    """
    with transaction(renderer.factory) as session:
        job = store.get_job(session, job_id)
        voice, params = job.voice, dict(job.params)
        store.start_job(session, job_id=job_id)
    ttl = timedelta(seconds=renderer.settings.lease_seconds)
    try:
        while not renderer.stopping.is_set():
            if renderer.backoff:
                time.sleep(renderer.backoff)
                renderer.backoff = 0.0
            with transaction(renderer.factory) as session:
                leases = store.lease_chunks(
                    session,
                    job_id=job_id,
                    owner=renderer.owner,
                    limit=renderer.settings.batch_size,
                    ttl=ttl,
                    max_attempts=renderer.settings.max_attempts,
                )
            if leases:
                with renderer.heartbeat():
                    renderer.render_leases(leases, voice=voice, params=params)
            elif not _wait_for_others(renderer, job_id):
                break
            if progress is not None:
                progress(job_progress(renderer, job_id))
    finally:
        with transaction(renderer.factory) as session:
            store.release_leases(session, owner=renderer.owner)
    return renderer.stats
