"""QA while rendering, the renderer's part: a batch's chunks checked before they are
recorded, a flagged one rendered again with other seeds, the best take kept, and its
verdict stored with the chunk (pipeline.qa.live judges; see there)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from pipeline.audio.process import to_wav_bytes
from pipeline.engines import SynthesisRequest, SynthesisResult
from pipeline.engines.base import ParamValue
from pipeline.qa.live import LiveQa, Verdict, take_seed, verdict_columns
from pipeline.render.chunk_index import ChunkIndex
from pipeline.render.rendered import audible
from pipeline.render.stats import RenderStats
from pipeline.stages import stage
from pipeline.state import verdicts as verdict_rows
from pipeline.state.store import ChunkLease, RenderedAudio
from pipeline.storage.base import ObjectStore
from pipeline.storage.keys import chunk_key

__all__ = ["LiveQa", "Takes"]

Done = tuple[ChunkLease, RenderedAudio, bool]  # a chunk, its audio, and whether cached
Outcomes = list[SynthesisResult | BaseException]


class Takes:
    """One renderer's QA: `review` before chunks are recorded, `record` with them. With
    `qa` None (a job without QA) both leave everything as it was."""

    def __init__(
        self,
        qa: LiveQa | None,
        objects: ObjectStore,
        render: Callable[[Sequence[SynthesisRequest]], Outcomes],
        stats: RenderStats,
        index: ChunkIndex | None,
        retrying: Callable[[str, Callable[[], Any]], Any],
    ) -> None:
        self.qa = qa
        self.objects = objects
        self.render = render  # the renderer's engine call: batcher, OOM splits and all
        self.stats = stats
        self.index = index
        self.retrying = retrying
        self.batch: tuple[str, Mapping[str, ParamValue]] = ("", {})  # the job's voice, params
        self.verdicts: dict[str, Verdict] = {}  # content hash -> its kept take's verdict

    def review(self, done: Sequence[Done]) -> list[Done]:
        """`done` with each chunk's kept take in place of its first. The batch's chunks are
        checked together, twins (one content hash) once; re-takes are rendered together.
        Cached audio is checked too: it may come from a job that ran without QA."""
        if self.qa is None or not done:
            return list(done)
        firsts: dict[str, tuple[ChunkLease, RenderedAudio]] = {}
        for lease, audio, _ in done:
            firsts.setdefault(lease.content_hash, (lease, audio))
        leases = [lease for lease, _ in firsts.values()]
        with stage("render.qa"):
            reviews = self.qa.review(
                [(lease.text, audio) for lease, audio in firsts.values()],
                audio_of=self._read,
                retake=lambda indexes, take: self.retake([leases[i] for i in indexes], take),
            )
        kept: dict[str, RenderedAudio] = {}
        for lease, review in zip(leases, reviews, strict=True):
            kept[lease.content_hash] = review.kept
            self.verdicts[lease.content_hash] = review.verdict
            self.stats.qa_checked += len(review.takes)
            self.stats.qa_retakes += len(review.takes) - 1
            self.stats.qa_error_rates += [v.error_rate for v in review.takes]
            self.stats.qa_flags += [flag for v in review.takes for flag in v.flags]
            if review.kept is not firsts[lease.content_hash][1] and self.index is not None:
                self.index.remember({lease.content_hash: review.kept})  # the best, for others
        self.stats.qa_flagged += sum(
            1 for lease, _, _ in done if self.verdicts[lease.content_hash].flagged
        )
        return [
            (lease, kept[lease.content_hash], cached and kept[lease.content_hash] is audio)
            for lease, audio, cached in done
        ]

    def _read(self, audio: RenderedAudio) -> bytes:
        data: bytes = self.retrying(
            f"reading {audio.object_key}", lambda: self.objects.get(audio.object_key)
        )
        return data

    def retake(
        self, leases: Sequence[ChunkLease], take: int
    ) -> list[RenderedAudio | BaseException]:
        """Take number `take` of flagged chunks, in one engine call: each with another seed
        (`take_seed`), trimmed, and stored under its own audio's hash (the first take
        keeps the chunk's content key; each take's object is written once)."""
        voice, params = self.batch
        requests = [
            SynthesisRequest(
                text=lease.text,
                voice=lease.voice or voice,
                params=params,
                seed=take_seed(lease.content_hash, take),
            )
            for lease in leases
        ]
        started = time.perf_counter()
        try:
            with stage("engine"):
                results = self.render(requests)
        finally:
            self.stats.engine_seconds += time.perf_counter() - started
        out: list[RenderedAudio | BaseException] = []
        for lease, result in zip(leases, results, strict=True):
            try:
                out.append(self._store(lease, take, result))
            except Exception as exc:
                out.append(exc)
        return out

    def _store(
        self, lease: ChunkLease, take: int, result: SynthesisResult | BaseException
    ) -> RenderedAudio:
        if isinstance(result, BaseException):
            raise result
        audio = audible(result, silent=f"take {take} of {lease.text[:60]!r} is silent")
        wav = to_wav_bytes(audio, result.sample_rate)
        key = chunk_key(hashlib.sha256(wav).hexdigest())
        self.retrying(
            f"storing chunk {lease.seq}'s take {take}",
            lambda: self.objects.put_if_absent(key, wav, content_type="audio/wav"),
        )
        return RenderedAudio(key, len(audio) / result.sample_rate, result.sample_rate)

    def record(self, session: Session, done: Sequence[Done], outcomes: Sequence[bool]) -> None:
        """Store the verdicts of the chunks just marked done, in the transaction that
        marked them (a done chunk of a QA job always has one), and forget them here."""
        for ok, (lease, _, _) in zip(outcomes, done, strict=True):
            verdict = self.verdicts.get(lease.content_hash)
            if ok and verdict is not None:
                columns = verdict_columns(verdict)
                verdict_rows.record_verdict(session, chunk_id=lease.chunk_id, columns=columns)
        for lease, _, _ in done:
            self.verdicts.pop(lease.content_hash, None)
