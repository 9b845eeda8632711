"""Render a job's chunks and assemble its outputs. Both modes call these functions."""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.process import to_wav_bytes, trim_silence
from pipeline.config import Settings
from pipeline.engines import Engine, SynthesisRequest, SynthesisResult
from pipeline.engines.base import ParamValue
from pipeline.errors import InputError, PermanentError, RetryableError, VoicebatchError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus
from pipeline.state.store import ChunkLease
from pipeline.storage import ObjectStore, chunk_key

log = logging.getLogger(__name__)


def worker_id() -> str:
    """A lease owner name unique to this process and run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass
class RenderStats:
    """What one render run did; `engine_seconds` is wall time inside engine calls."""

    rendered: int = 0
    cached: int = 0
    failed: int = 0
    lost: int = 0  # leases taken over by someone else before we could commit
    audio_seconds: float = 0.0
    engine_seconds: float = 0.0
    engine_calls: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RenderProgress:
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    audio_seconds_total: float
    stats: RenderStats


ProgressCallback = Callable[[RenderProgress], None]


class ChunkRenderer:
    """Takes leased chunks of one job through cache lookup, engine, post-processing and storage."""

    def __init__(
        self,
        *,
        factory: sessionmaker[Session],
        store_: ObjectStore,
        engine: Engine,
        settings: Settings,
        owner: str | None = None,
    ) -> None:
        self.factory = factory
        self.objects = store_
        self.engine = engine
        self.settings = settings
        self.owner = owner or worker_id()
        self.stats = RenderStats()
        self.backoff = 0.0  # seconds to wait before the next lease, after a retryable failure

    def _complete(
        self, lease: ChunkLease, key: str, duration: float, rate: int, *, cached: bool
    ) -> None:
        with transaction(self.factory) as session:
            ok = store.complete_chunk(
                session,
                chunk_id=lease.chunk_id,
                owner=self.owner,
                object_key=key,
                duration=duration,
                sample_rate=rate,
                cache_hit=cached,
            )
        if not ok:
            self.stats.lost += 1
            return
        self.stats.audio_seconds += duration
        if cached:
            self.stats.cached += 1
        else:
            self.stats.rendered += 1

    def _fail(self, lease: ChunkLease, exc: BaseException) -> None:
        retryable = isinstance(exc, RetryableError)
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        with transaction(self.factory) as session:
            outcome = store.fail_chunk(
                session,
                chunk_id=lease.chunk_id,
                owner=self.owner,
                error=message,
                retryable=retryable,
                max_attempts=self.settings.max_attempts,
            )
        if outcome == ChunkStatus.FAILED:
            self.stats.failed += 1
        elif outcome == ChunkStatus.PENDING:
            # Retried by a later lease; wait first, longer each attempt (with jitter).
            self.backoff = max(
                self.backoff, min(30.0, 0.5 * 2**lease.attempts) * random.uniform(0.5, 1.0)
            )
        self.stats.errors.append(f"chunk {lease.seq}: {message}")
        log.warning("chunk %s failed (attempt %s): %s", lease.seq, lease.attempts, message)

    def _from_cache(self, lease: ChunkLease) -> bool:
        with transaction(self.factory) as session:
            found = store.find_rendered(session, content_hash=lease.content_hash)
        if found is None or not self.objects.exists(found.object_key):
            return False
        self._complete(lease, found.object_key, found.duration, found.sample_rate, cached=True)
        return True

    def _engine_batch(
        self, leases: Sequence[ChunkLease], voice: str, params: Mapping[str, ParamValue]
    ) -> list[SynthesisResult | BaseException]:
        requests = [
            SynthesisRequest(text=lease.text, voice=voice, params=params) for lease in leases
        ]
        started = time.perf_counter()
        try:
            self.stats.engine_calls += 1
            return list(self.engine.render_batch(requests))
        except (InputError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if len(requests) == 1:
                return [exc]
            # One bad request must not fail its neighbours: render them one by one.
            log.info("batch of %d failed (%s); retrying one by one", len(requests), exc)
            results: list[SynthesisResult | BaseException] = []
            for request in requests:
                try:
                    self.stats.engine_calls += 1
                    results.extend(self.engine.render_batch([request]))
                except (InputError, KeyboardInterrupt):
                    raise
                except Exception as single:
                    results.append(single)
            return results
        finally:
            self.stats.engine_seconds += time.perf_counter() - started

    def render_leases(
        self, leases: Sequence[ChunkLease], *, voice: str, params: Mapping[str, ParamValue]
    ) -> None:
        """Render leased chunks: cached ones are taken from storage, the rest go to the engine."""
        misses = [lease for lease in leases if not self._from_cache(lease)]
        if not misses:
            return
        for lease, result in zip(misses, self._engine_batch(misses, voice, params), strict=True):
            if isinstance(result, BaseException):
                self._fail(lease, result)
                continue
            try:
                audio = trim_silence(result.audio, result.sample_rate)
                if audio.size == 0:
                    raise PermanentError(
                        f"the engine produced no audible speech for {lease.text[:60]!r}"
                    )
                key = chunk_key(lease.content_hash)
                self.objects.put_if_absent(
                    key, to_wav_bytes(audio, result.sample_rate), content_type="audio/wav"
                )
                self._complete(
                    lease, key, len(audio) / result.sample_rate, result.sample_rate, cached=False
                )
            except VoicebatchError as exc:
                self._fail(lease, exc)

    poll_seconds = 1.0

    def _progress(self, job_id: uuid.UUID) -> RenderProgress:
        with transaction(self.factory) as session:
            counts = store.job_progress(session, job_id=job_id)
        return RenderProgress(
            counts.chunks_total,
            counts.chunks_done,
            counts.chunks_failed,
            counts.audio_seconds,
            self.stats,
        )

    def _wait_for_others(self, job_id: uuid.UUID) -> bool:
        """Called when nothing is left to lease: True if the loop should go on.

        Chunks held by a process of this host that no longer exists (kill -9, a crash)
        are handed back at once, to be leased on the next turn; owners are named
        host:pid:nonce. While a live owner holds chunks, wait for it to finish them (or for
        its leases to expire, when lease_chunks takes them over).
        """
        host = socket.gethostname()
        with transaction(self.factory) as session:
            released = 0
            for owner in store.lease_owners(session, job_id=job_id):
                owner_host, _, rest = owner.partition(":")
                pid = rest.partition(":")[0]
                if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                    log.info("taking back chunks held by %s, which is no longer running", owner)
                    released += store.release_leases(session, owner=owner)
            if released:
                return True
            held = bool(store.lease_owners(session, job_id=job_id))
        if held:
            time.sleep(self.poll_seconds)
        return held

    def render_job(
        self, job_id: uuid.UUID, *, progress: ProgressCallback | None = None
    ) -> RenderStats:
        """Lease and render this job's chunks until none is left to take.

        On any exit (Ctrl-C included) the leases still held are handed back, so the next
        run or another worker picks them up at once.
        """
        with transaction(self.factory) as session:
            job = store.get_job(session, job_id)
            voice, params = job.voice, dict(job.params)
            store.start_job(session, job_id=job_id)
        ttl = timedelta(seconds=self.settings.lease_seconds)
        try:
            while True:
                if self.backoff:
                    time.sleep(self.backoff)
                    self.backoff = 0.0
                with transaction(self.factory) as session:
                    leases = store.lease_chunks(
                        session,
                        job_id=job_id,
                        owner=self.owner,
                        limit=self.settings.batch_size,
                        ttl=ttl,
                        max_attempts=self.settings.max_attempts,
                    )
                if leases:
                    self.render_leases(leases, voice=voice, params=params)
                elif not self._wait_for_others(job_id):
                    break
                if progress is not None:
                    progress(self._progress(job_id))
        finally:
            with transaction(self.factory) as session:
                store.release_leases(session, owner=self.owner)
        return self.stats
