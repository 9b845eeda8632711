"""The batch renderer: lease -> cache -> engine -> store -> record, for each batch of
leased chunks. The drivers that lease for it are `jobs` (a whole job, embedded mode) and
`messages` (the chunks one message names, distributed mode)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.process import to_wav_bytes, trim_silence
from pipeline.backoff import backoff_delay
from pipeline.batching import BatchingEngine, isolate
from pipeline.config import Settings
from pipeline.engines import Engine, SynthesisRequest, SynthesisResult
from pipeline.engines.base import ParamValue
from pipeline.errors import (
    PermanentError,
    RetryableError,
    VoicebatchError,
)
from pipeline.render.chunk_index import ChunkIndex
from pipeline.render.leases import LeaseHeartbeat, worker_id
from pipeline.stages import stage
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus
from pipeline.state.store import ChunkLease, RenderedAudio
from pipeline.storage.base import ObjectStore
from pipeline.storage.keys import chunk_key

log = logging.getLogger(__name__)


STORE_THREADS = 4


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
    oom_splits: int = 0  # batches halved because the engine ran out of memory
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
        index: ChunkIndex | None = None,
    ) -> None:
        self.factory = factory
        self.objects = store_
        self.engine = engine
        self.settings = settings
        self.owner = owner or worker_id()
        self.index = index
        self.stats = RenderStats()
        self.backoff = 0.0  # seconds to wait before the next lease, after a retryable failure
        self.stopping = threading.Event()  # set by whoever runs render_job on another thread

    def heartbeat(self) -> LeaseHeartbeat:
        """Keeps this renderer's leases alive while a batch renders (a third of their life
        between beats)."""
        seconds = self.settings.lease_seconds
        return LeaseHeartbeat(self.factory, self.owner, timedelta(seconds=seconds), seconds / 3)

    def _record(self, done: Sequence[tuple[ChunkLease, RenderedAudio, bool]]) -> None:
        """Mark chunks done in one transaction; a chunk whose lease was lost is not counted."""
        if not done:
            return
        with transaction(self.factory) as session:
            outcomes = [
                store.complete_chunk(
                    session,
                    chunk_id=lease.chunk_id,
                    owner=self.owner,
                    object_key=audio.object_key,
                    duration=audio.duration,
                    sample_rate=audio.sample_rate,
                    cache_hit=cached,
                )
                for lease, audio, cached in done
            ]
        for ok, (_, audio, cached) in zip(outcomes, done, strict=True):
            if not ok:
                self.stats.lost += 1
                continue
            self.stats.audio_seconds += audio.duration
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
            self.backoff = max(self.backoff, backoff_delay(lease.attempts + 1))
        self.stats.errors.append(f"chunk {lease.seq}: {message}")
        log.warning("chunk %s failed (attempt %s): %s", lease.seq, lease.attempts, message)

    def _lookup(self, digests: Sequence[str]) -> dict[str, RenderedAudio]:
        """Audio already rendered for these content hashes: the index first, then one
        database query for the rest (whose objects must still exist)."""
        found = self.index.lookup(digests) if self.index is not None else {}
        rest = [d for d in digests if d not in found]
        if not rest:
            return found
        with transaction(self.factory) as session:
            recorded = store.find_rendered_many(session, content_hashes=rest)
        confirmed = {d: a for d, a in recorded.items() if self.objects.exists(a.object_key)}
        # Not put back in the index: an object found here may be near the end of its
        # life (the lifecycle rule expires chunks chunk_expire_days after they were
        # written), and an index entry lives 7 days. Only freshly written chunks are
        # indexed, so no entry outlives its object while chunk_expire_days > 7.
        return found | confirmed

    def _engine_batch(
        self, leases: Sequence[ChunkLease], voice: str, params: Mapping[str, ParamValue]
    ) -> list[SynthesisResult | BaseException]:
        # A catalogue row may have a voice of its own; its content hash includes it, so
        # chunks grouped by hash share their voice too.
        requests = [
            SynthesisRequest(text=lease.text, voice=lease.voice or voice, params=params)
            for lease in leases
        ]
        started = time.perf_counter()
        try:
            with stage("engine"):
                return self._render_requests(requests)
        finally:
            self.stats.engine_seconds += time.perf_counter() - started

    def _render_requests(
        self, requests: Sequence[SynthesisRequest]
    ) -> list[SynthesisResult | BaseException]:
        """The engine's results, or each request's own failure.

        A batch that does not fit in the engine's memory is split in halves and tried
        again, down to single requests; a single request that still does not fit fails
        with a retryable error (tried again later, up to max_attempts). Any other failure
        of a batch is retried one request at a time, so one bad request fails alone.
        """

        if isinstance(self.engine, BatchingEngine):
            # The batcher merges these with other producers' requests and already keeps
            # each request's failure to itself (halving on OOM included).
            self.stats.engine_calls += 1
            return self.engine.render_outcomes(requests)

        def run(batch: list[SynthesisRequest]) -> list[SynthesisResult]:
            self.stats.engine_calls += 1
            return list(self.engine.render_batch(batch))

        outcomes, splits = isolate(run, list(requests))
        self.stats.oom_splits += splits
        return outcomes

    def _store(self, lease: ChunkLease, result: SynthesisResult) -> RenderedAudio:
        with stage("render.trim"):
            audio = trim_silence(result.audio, result.sample_rate)
        if audio.size == 0:
            raise PermanentError(f"the engine produced no audible speech for {lease.text[:60]!r}")
        key = chunk_key(lease.content_hash)
        with stage("render.store_chunks"):
            self.objects.put_if_absent(
                key, to_wav_bytes(audio, result.sample_rate), content_type="audio/wav"
            )
        return RenderedAudio(key, len(audio) / result.sample_rate, result.sample_rate)

    def _render_groups(
        self,
        groups: Sequence[list[ChunkLease]],
        voice: str,
        params: Mapping[str, ParamValue],
    ) -> None:
        """One engine request per content hash; its twins in the batch share the audio.

        Trimming, WAV encoding and the uploads run on a few threads: with S3, the upload
        round trips are most of a chunk's bookkeeping."""
        firsts = [group[0] for group in groups]
        try:
            results = self._engine_batch(firsts, voice, params)
        except BaseException:
            if self.index is not None:
                self.index.release([lease.content_hash for lease in firsts], self.owner)
            raise

        def finish(
            pair: tuple[list[ChunkLease], SynthesisResult | BaseException],
        ) -> RenderedAudio | BaseException:
            group, result = pair
            if isinstance(result, BaseException):
                return result
            try:
                return self._store(group[0], result)
            except VoicebatchError as exc:
                return exc
            except Exception as exc:  # an unforeseen storage failure: retried, then failed
                return RetryableError(f"storing the chunk failed: {type(exc).__name__}: {exc}")

        pairs = list(zip(groups, results, strict=True))
        try:
            if len(pairs) > 1:
                with ThreadPoolExecutor(min(STORE_THREADS, len(pairs))) as pool:
                    outcomes = list(pool.map(finish, pairs))
            else:
                outcomes = [finish(pair) for pair in pairs]
        finally:
            if self.index is not None:
                self.index.release([lease.content_hash for lease in firsts], self.owner)
        done: list[tuple[ChunkLease, RenderedAudio, bool]] = []
        rendered: dict[str, RenderedAudio] = {}
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                for lease in group:
                    self._fail(lease, outcome)
                continue
            rendered[group[0].content_hash] = outcome
            done += [(lease, outcome, index > 0) for index, lease in enumerate(group)]
        if self.index is not None:
            self.index.remember(rendered)
        self._record(done)

    def render_leases(
        self, leases: Sequence[ChunkLease], *, voice: str, params: Mapping[str, ParamValue]
    ) -> None:
        """Render leased chunks. Chunks whose content hash has audio already (any job, any
        user) are taken from storage; identical chunks in the batch are rendered once; a
        chunk another renderer is rendering right now is waited for, not rendered twice."""
        groups: dict[str, list[ChunkLease]] = {}
        for lease in leases:
            groups.setdefault(lease.content_hash, []).append(lease)
        hits = self._lookup(list(groups))
        cached = [
            (lease, hits[d], True) for d, group in groups.items() if d in hits for lease in group
        ]
        self._record(cached)
        misses = [d for d in groups if d not in hits]
        if self.index is None:
            claimed = set(misses)
        else:
            claimed = self.index.claim(misses, self.owner, self.settings.lease_seconds)
        mine = [groups[d] for d in misses if d in claimed]
        theirs = [groups[d] for d in misses if d not in claimed]
        if mine:
            self._render_groups(mine, voice, params)
        if theirs:
            self._await_others(theirs, voice, params)

    claim_wait_seconds = 30.0

    def _await_others(
        self, groups: list[list[ChunkLease]], voice: str, params: Mapping[str, ParamValue]
    ) -> None:
        """Wait (a while) for chunks another renderer claimed; render what does not appear."""
        deadline = time.monotonic() + min(self.claim_wait_seconds, self.settings.lease_seconds / 2)
        while groups and time.monotonic() < deadline:
            time.sleep(0.05)
            assert self.index is not None
            hits = self.index.lookup([group[0].content_hash for group in groups])
            self._record(
                [
                    (lease, hits[g[0].content_hash], True)
                    for g in groups
                    if g[0].content_hash in hits
                    for lease in g
                ]
            )
            groups = [g for g in groups if g[0].content_hash not in hits]
        if groups:
            self._render_groups(groups, voice, params)

    poll_seconds = 1.0  # how often render_job looks again while others hold chunks
