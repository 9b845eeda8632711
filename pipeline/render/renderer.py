"""The batch renderer: lease -> cache -> engine -> store -> record, for each batch of
leased chunks. The drivers that lease for it are `jobs` (a whole job, embedded mode) and
`messages` (the chunks one message names, distributed mode)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.process import to_wav_bytes
from pipeline.backoff import backoff_delay
from pipeline.batching import BatchingEngine, isolate
from pipeline.config import Settings
from pipeline.engines import Engine, SynthesisRequest, SynthesisResult
from pipeline.engines.base import ParamValue
from pipeline.errors import (
    EngineHung,
    RetryableError,
    VoicebatchError,
)
from pipeline.render.chunk_index import ChunkIndex
from pipeline.render.failures import (
    EngineHealth,
    Failure,
    classify,
    exit_hung,
    note_outcomes,
    retry_transient,
)
from pipeline.render.leases import LeaseHeartbeat, worker_id
from pipeline.render.rendered import audible, recorded_audio
from pipeline.render.stats import ProgressCallback, RenderProgress, RenderStats
from pipeline.render.takes import LiveQa, Takes
from pipeline.stages import stage
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus
from pipeline.state.store import ChunkLease, RenderedAudio
from pipeline.storage.base import ObjectStore
from pipeline.storage.keys import chunk_key

log = logging.getLogger(__name__)
__all__ = ["ChunkRenderer", "ProgressCallback", "RenderProgress", "RenderStats"]


STORE_THREADS = 4
T = TypeVar("T")


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
        health: EngineHealth | None = None,
        on_hung: Callable[[EngineHung], None] = exit_hung,
        qa: LiveQa | None = None,
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
        # shared by every renderer of one engine (a worker process): see render.failures
        self.health = health or EngineHealth()
        self.on_hung = on_hung
        self._held: list[ChunkLease] = []  # the batch render_leases works on
        # QA while rendering: each chunk checked before it is recorded, re-taken if flagged
        self.takes = Takes(
            qa, self.objects, self._render_requests, self.stats, index, self._retrying
        )

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """call(), storage and database trouble tried again in place (render.failures)."""
        budget = self.settings.task_retry_seconds
        return retry_transient(
            what, call, budget_seconds=budget, stopping=self.stopping, stats=self.stats
        )

    def heartbeat(self) -> LeaseHeartbeat:
        """Keeps this renderer's leases alive while a batch renders (a third of their life
        between beats), for at most max_batch_seconds: past that the engine is taken for
        hung (`_hung`)."""
        seconds = self.settings.lease_seconds
        return LeaseHeartbeat(
            self.factory,
            self.owner,
            timedelta(seconds=seconds),
            seconds / 3,
            deadline=self.settings.max_batch_seconds,
            on_overrun=self._hung,
        )

    def _hung(self) -> None:
        """The watchdog (the heartbeat's thread): a batch overran max_batch_seconds. Its
        leases stop being renewed and go back to pending with the attempt counted (a chunk
        that hangs the engine every time fails after max_attempts, and after a hang the
        chunks are rendered one at a time); then `on_hung` (default: exit the process)."""
        held = list(self._held)
        limit = self.settings.max_batch_seconds
        exc = EngineHung(
            f"a batch of {len(held)} chunk(s) ran past VOICEBATCH_MAX_BATCH_SECONDS={limit:g}: "
            "the engine is taken for hung"
        )
        log.critical("%s; handing its chunks back", exc)
        self.stopping.set()
        try:
            self.fail_chunks(held, exc)
        except Exception as error:  # the database is down too: the leases will expire
            log.error("could not hand back the hung batch's chunks: %s", error)
        self.on_hung(exc)

    def _record(self, done: Sequence[tuple[ChunkLease, RenderedAudio, bool]]) -> None:
        """Mark chunks done in one transaction; a chunk whose lease was lost is not counted."""
        if not done:
            return
        done = self.takes.review(done)  # as it was, without QA
        outcomes = self._retrying("recording rendered chunks", lambda: self._complete(done))
        for ok, (_, audio, cached) in zip(outcomes, done, strict=True):
            if not ok:
                self.stats.lost += 1
                continue
            self.stats.audio_seconds += audio.duration
            if cached:
                self.stats.cached += 1
            else:
                self.stats.rendered += 1

    def _complete(self, done: Sequence[tuple[ChunkLease, RenderedAudio, bool]]) -> list[bool]:
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
            self.takes.record(session, done, outcomes)  # QA's verdicts, with `done`
            return outcomes

    def _fail(self, lease: ChunkLease, exc: BaseException) -> None:
        """Record a chunk's failure: back to pending with the attempt counted, or failed
        (after max_attempts, or at once for input and permanent errors)."""
        retryable = classify(exc) != Failure.FINAL
        message = " ".join(f"{type(exc).__name__}: {exc}".split())

        def record() -> ChunkStatus | None:
            with transaction(self.factory) as session:
                return store.fail_chunk(
                    session,
                    chunk_id=lease.chunk_id,
                    owner=self.owner,
                    error=message,
                    retryable=retryable,
                    max_attempts=self.settings.max_attempts,
                )

        outcome = self._retrying(f"recording chunk {lease.seq}'s failure", record)
        if outcome == ChunkStatus.FAILED:
            self.stats.failed += 1
        elif outcome == ChunkStatus.PENDING:
            # Retried by a later lease; wait first, longer each attempt (with jitter).
            self.backoff = max(self.backoff, backoff_delay(lease.attempts + 1))
        self.stats.errors.append(f"chunk {lease.seq}: {message}")
        log.warning("chunk %s failed (attempt %s): %s", lease.seq, lease.attempts, message)

    def fail_chunks(self, leases: Sequence[ChunkLease], exc: BaseException) -> None:
        """Record `exc` on each of these chunks this renderer still holds (a chunk done
        meanwhile, or no longer its own, is left as it is)."""
        for lease in leases:
            self._fail(lease, exc)

    def _lookup(self, digests: Sequence[str]) -> dict[str, RenderedAudio]:
        """Audio already rendered for these content hashes: the index first, then one
        database query for the rest (whose objects must still exist)."""
        found = self.index.lookup(digests) if self.index is not None else {}
        rest = [d for d in digests if d not in found]
        if not rest:
            return found

        confirmed = self._retrying(
            "looking up rendered chunks", lambda: recorded_audio(self.factory, self.objects, rest)
        )
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
            audio = audible(
                result, silent=f"the engine produced no audible speech for {lease.text[:60]!r}"
            )
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

        broken = note_outcomes(self.health, [group[0].content_hash for group in groups], results)

        def finish(
            pair: tuple[list[ChunkLease], SynthesisResult | BaseException],
        ) -> RenderedAudio | BaseException:
            group, result = pair
            if isinstance(result, BaseException):
                return result
            try:
                return self._retrying(
                    f"storing chunk {group[0].seq}", lambda: self._store(group[0], result)
                )
            except VoicebatchError as exc:
                return exc
            except Exception as exc:  # an unforeseen storage failure: passing trouble
                error = RetryableError(f"storing the chunk failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                return error

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
        passing: BaseException | None = None
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                kind = classify(outcome)
                if kind == Failure.TRANSIENT:
                    passing = outcome  # handed back below, the attempt not counted
                elif broken is None:  # on a broken engine no chunk is to blame
                    for lease in group:
                        self._fail(lease, outcome)
                continue
            rendered[group[0].content_hash] = outcome
            done += [(lease, outcome, index > 0) for index, lease in enumerate(group)]
        if self.index is not None:
            self.index.remember(rendered)
        self._record(done)
        if broken is not None:
            raise broken
        if passing is not None:
            # Past VOICEBATCH_TASK_RETRY_SECONDS: the caller hands the leases back (the
            # attempt given back) and tries the chunks again later, with backoff.
            raise RetryableError(f"handed back after passing trouble: {passing}") from passing

    def render_leases(
        self, leases: Sequence[ChunkLease], *, voice: str, params: Mapping[str, ParamValue]
    ) -> None:
        """Render leased chunks. Chunks whose content hash has audio already (any job, any
        user) are taken from storage; identical chunks in the batch are rendered once; a
        chunk another renderer is rendering right now is waited for, not rendered twice."""
        self._held = list(leases)
        self.takes.batch = (voice, params)
        try:
            self._render_leases(leases, voice=voice, params=params)
        finally:
            self._held = []

    def _render_leases(
        self, leases: Sequence[ChunkLease], *, voice: str, params: Mapping[str, ParamValue]
    ) -> None:
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
