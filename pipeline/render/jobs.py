"""The job driver (embedded mode): lease and render a job's chunks, a batch at a time,
until none is left to take.

Chunks a dead process of this host held (a segfault, an OOM kill, kill -9) are taken
back at once, and the attempt it used stays counted; chunks a live one holds are waited
for. A chunk leased before that never finished may be what killed its renderer, so such
chunks are rendered one at a time, each attempt committed before it starts and nothing
else rendering beside it (as a render message does in distributed mode): a chunk that
kills the process then costs only its own attempts, is failed after max_attempts, and
the rest of the book is written.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta

from pipeline.engines.base import ParamValue
from pipeline.render.leases import gone_from_this_host
from pipeline.render.renderer import ChunkRenderer, ProgressCallback, RenderProgress, RenderStats
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.store import ChunkLease, TakenOver

log = logging.getLogger(__name__)

# Says something a person running the render should know (one line).
Notice = Callable[[str], None]


class RenderGate:
    """Batches of several producers render side by side; a chunk under suspicion (leased
    before, never finished) renders alone, so that if it kills the process no other
    chunk's attempt dies with it. Waiting suspects go first."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sharing = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not (self._alone or self._waiting_alone))
            self._sharing += 1
        try:
            yield
        finally:
            with self._changed:
                self._sharing -= 1
                self._changed.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._waiting_alone += 1
            self._changed.wait_for(lambda: not (self._alone or self._sharing))
            self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


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


def died_on(owner: str, chunks: list[TakenOver], max_attempts: int) -> str:
    """One line: what a dead renderer was rendering when it died, and what happens now."""
    pid = owner.split(":")[1] if owner.count(":") >= 2 else owner
    first = chunks[0]
    quoted = repr(first.text if len(first.text) <= 70 else first.text[:67] + "...")
    if len(chunks) == 1:
        what = f"chunk {first.seq} {quoted} (attempt {first.attempts} of {max_attempts})"
        then = (
            f"it failed {max_attempts} times and is given up; the rest goes on"
            if first.failed
            else "it is tried again alone"
        )
    else:
        what = f"{len(chunks)} chunks, {first.seq} to {chunks[-1].seq}, from {quoted}"
        given_up = [c.seq for c in chunks if c.failed]
        then = "they are tried again one at a time" + (
            f" (given up after {max_attempts} attempts: {', '.join(map(str, given_up))})"
            if given_up
            else ""
        )
    return f"the previous run (pid {pid}) died while rendering {what}; {then}"


def take_over_dead(renderer: ChunkRenderer, job_id: uuid.UUID, notice: Notice | None) -> bool:
    """Take back the chunks held by processes of this host that no longer run; owners
    are named host:pid:nonce. Their attempts stay counted. Says what each died on.
    True if any chunk was taken back."""
    max_attempts = renderer.settings.max_attempts
    with transaction(renderer.factory) as session:
        taken = [
            (owner, store.take_over_leases(session, owner=owner, max_attempts=max_attempts))
            for owner in store.lease_owners(session, job_id=job_id)
            if gone_from_this_host(owner)
        ]
    for owner, chunks in taken:
        if chunks:
            line = died_on(owner, chunks, max_attempts)
            if notice is None:
                log.warning("%s", line)
            else:
                notice(line)
    return any(chunks for _, chunks in taken)


def _wait_for_others(renderer: ChunkRenderer, job_id: uuid.UUID, notice: Notice | None) -> bool:
    """Called when nothing is left to lease: True if the loop should go on.

    Chunks held by a dead process of this host are taken back, to be leased on the next
    turn. While a live owner holds chunks, wait for it to finish them (or for its leases
    to expire, when lease_chunks takes them over).
    """
    if take_over_dead(renderer, job_id, notice):
        return True
    with transaction(renderer.factory) as session:
        held = bool(store.lease_owners(session, job_id=job_id))
    if held:
        time.sleep(renderer.poll_seconds)
    return held


def _pause_after_failure(renderer: ChunkRenderer) -> None:
    if renderer.backoff:
        time.sleep(renderer.backoff)
        renderer.backoff = 0.0


def _lease(renderer: ChunkRenderer, job_id: uuid.UUID, limit: int) -> list[ChunkLease]:
    with transaction(renderer.factory) as session:
        return store.lease_chunks(
            session,
            job_id=job_id,
            owner=renderer.owner,
            limit=limit,
            ttl=timedelta(seconds=renderer.settings.lease_seconds),
            max_attempts=renderer.settings.max_attempts,
        )


def _release(renderer: ChunkRenderer) -> None:
    with transaction(renderer.factory) as session:
        store.release_leases(session, owner=renderer.owner)


def _render_suspects_alone(
    renderer: ChunkRenderer,
    job_id: uuid.UUID,
    gate: RenderGate,
    voice: str,
    params: Mapping[str, ParamValue],
) -> None:
    """One chunk at a time, alone, while the chunk leased was leased before; back to
    batches once a chunk leased is a fresh one (rendered alone too: it is leased)."""
    with gate.alone():
        while not renderer.stopping.is_set():
            _pause_after_failure(renderer)
            leases = _lease(renderer, job_id, 1)
            if not leases:
                return
            with renderer.heartbeat():
                renderer.render_leases(leases, voice=voice, params=params)
            if leases[0].attempts <= 1:
                return


def render_job(
    renderer: ChunkRenderer,
    job_id: uuid.UUID,
    *,
    progress: ProgressCallback | None = None,
    notice: Notice | None = None,
    gate: RenderGate | None = None,
) -> RenderStats:
    """Lease and render this job's chunks until none is left to take.

    `gate` is shared by the producers of one process (`render_job_concurrently`), so a
    suspect chunk renders alone in the process. On any exit (Ctrl-C included) the leases
    still held are handed back, so the next run or another worker picks them up at once.
    """
    gate = gate or RenderGate()
    with transaction(renderer.factory) as session:
        job = store.get_job(session, job_id)
        voice, params = job.voice, dict(job.params)
        store.start_job(session, job_id=job_id)
    try:
        take_over_dead(renderer, job_id, notice)  # a crashed run: say what it died on
        while not renderer.stopping.is_set():
            _pause_after_failure(renderer)
            with gate.shared():
                leases = _lease(renderer, job_id, renderer.settings.batch_size)
                suspects = any(lease.attempts > 1 for lease in leases)
                if suspects:
                    # Leased before and never finished: its renderer may have died of
                    # one of them. Hand the batch back; take them one at a time.
                    _release(renderer)
                elif leases:
                    with renderer.heartbeat():
                        renderer.render_leases(leases, voice=voice, params=params)
            if suspects:
                _render_suspects_alone(renderer, job_id, gate, voice, params)
            elif not leases and not _wait_for_others(renderer, job_id, notice):
                break
            if progress is not None:
                progress(job_progress(renderer, job_id))
    finally:
        _release(renderer)
    return renderer.stats
