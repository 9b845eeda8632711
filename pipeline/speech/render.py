"""The worker's end of a speech request: sentence by sentence, from the chunk cache or
the engine (in the batcher's realtime lane), each sent back on the request's stream as
soon as it is there."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.process import from_wav_bytes, to_wav_bytes
from pipeline.batching import BatchingEngine
from pipeline.config import Settings
from pipeline.engines import Engine, SynthesisRequest, SynthesisResult
from pipeline.engines.base import AudioArray, ParamValue
from pipeline.errors import VoicebatchError
from pipeline.render.chunk_index import ChunkIndex
from pipeline.render.leases import worker_id
from pipeline.render.rendered import audible, recorded_audio
from pipeline.speech.channel import AUDIO, END, ERROR, SpeechEvent, SpeechWriter
from pipeline.speech.sentences import Sentence, plan_sentences
from pipeline.state.store import RenderedAudio
from pipeline.storage.base import ObjectStore
from pipeline.storage.keys import chunk_key

log = logging.getLogger(__name__)

CLAIM_POLL_SECONDS = 0.05


@dataclass
class SpeechStats:
    """What one request took: sentences from the cache, and rendered."""

    cached: int = 0
    rendered: int = 0
    audio_seconds: float = 0.0


@dataclass
class SpeechRenderer:
    """Speaks requests on a worker's engine, cache and store (one per worker process;
    `speak` may run on several threads at once)."""

    engine: Engine
    settings: Settings
    chunk_store: ObjectStore
    factory: sessionmaker[Session] | None
    index: ChunkIndex | None
    redis: Any
    owner: str = field(default_factory=worker_id)

    def speak(self, message: Mapping[str, Any]) -> SpeechStats:
        """Speak one request (`SpeechRequest.message`) onto its stream, ending it with
        `end`, or with `error` and the reason: the request is answered either way."""
        writer = SpeechWriter(
            self.redis,
            str(message["request_id"]),
            ttl_seconds=self.settings.speech_stream_ttl_seconds,
        )
        stats = SpeechStats()
        try:
            self._speak(message, writer, stats)
        except Exception as exc:
            reason = (
                exc.message if isinstance(exc, VoicebatchError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning("speech request %s failed: %s", message.get("request_id"), reason)
            writer.send(SpeechEvent(ERROR, message=" ".join(reason.split())))
            return stats
        writer.send(SpeechEvent(END))
        return stats

    def _speak(self, message: Mapping[str, Any], writer: SpeechWriter, stats: SpeechStats) -> None:
        clock = StageClock(message)
        plan = plan_sentences(
            str(message["text"]),
            voice=str(message["voice"]),
            speed=float(message["speed"]),
            engine=self.engine,
            settings=self.settings,
        )
        clock.lap("plan")
        known = self._lookup([s.content_hash for s in plan.sentences])
        clock.lap("lookup")
        for seq, sentence in enumerate(plan.sentences):
            cached = sentence.content_hash in known
            if cached:
                audio, rate = self._fetch(known[sentence.content_hash])
                clock.lap("fetch")
                stats.cached += 1
            else:
                audio, rate, cached = self._render(sentence, plan.voice, plan.params, clock)
                stats.cached += int(cached)
                stats.rendered += int(not cached)
            stats.audio_seconds += len(audio) / rate
            pause = np.zeros(rate * sentence.pause_ms // 1000, np.float32)
            pcm = _pcm16(audio, pause)
            writer.send(
                SpeechEvent(
                    AUDIO, seq=seq, sample_rate=rate, pcm=pcm, cached=cached, timings=clock.sent()
                )
            )
            clock = StageClock.done()

    def _lookup(self, digests: list[str]) -> dict[str, RenderedAudio]:
        """Audio already rendered for these hashes: the index, then the database."""
        found = self.index.lookup(digests) if self.index is not None else {}
        rest = [d for d in digests if d not in found]
        if rest and self.factory is not None:
            found |= recorded_audio(self.factory, self.chunk_store, rest)
        return found

    def _fetch(self, audio: RenderedAudio) -> tuple[AudioArray, int]:
        return from_wav_bytes(self.chunk_store.get(audio.object_key))

    def _render(
        self,
        sentence: Sentence,
        voice: str,
        params: Mapping[str, ParamValue],
        clock: StageClock,
    ) -> tuple[AudioArray, int, bool]:
        """A sentence nobody had: rendered here, unless another renderer is rendering it
        right now (its claim in the index), whose audio is then waited for. Returns the
        audio, its rate and whether it came from someone else's render."""
        digest = sentence.content_hash
        if self.index is None:
            return (*self._synthesize(sentence, voice, params, clock), False)
        deadline = time.monotonic() + min(30.0, self.settings.lease_seconds / 2)
        while not self.index.claim([digest], self.owner, self.settings.lease_seconds):
            found = self.index.lookup([digest])
            if digest in found:
                clock.lap("claim")
                audio = self._fetch(found[digest])
                clock.lap("fetch")
                return (*audio, True)
            if time.monotonic() > deadline:
                break  # the claim outlived its renderer: render it ourselves
            time.sleep(CLAIM_POLL_SECONDS)
        clock.lap("claim")
        try:
            return (*self._synthesize(sentence, voice, params, clock), False)
        finally:
            self.index.release([digest], self.owner)

    def _synthesize(
        self,
        sentence: Sentence,
        voice: str,
        params: Mapping[str, ParamValue],
        clock: StageClock,
    ) -> tuple[AudioArray, int]:
        request = SynthesisRequest(text=sentence.text, voice=voice, params=dict(params))
        result, lane_wait = _realtime(self.engine, request)
        clock.split("lane", lane_wait, "engine")
        audio = audible(
            result, silent=f"the engine produced no audible speech for {sentence.text[:60]!r}"
        )
        key = chunk_key(sentence.content_hash)
        wav = to_wav_bytes(audio, result.sample_rate)
        self.chunk_store.put_if_absent(key, wav, content_type="audio/wav")
        # what the cache hands out next time, sample for sample
        audio, _ = from_wav_bytes(wav)
        if self.index is not None:
            rendered = RenderedAudio(key, len(audio) / result.sample_rate, result.sample_rate)
            self.index.remember({sentence.content_hash: rendered})
        clock.lap("store")
        return audio, result.sample_rate


def _realtime(engine: Engine, request: SynthesisRequest) -> tuple[SynthesisResult, float]:
    """One request, ahead of batch work when a batcher is in front of the engine; with
    its lane wait in seconds (0 without a batcher: the wait is then inside the engine's
    lock, and counted as engine time)."""
    if isinstance(engine, BatchingEngine):
        outcome, lane_wait = engine.render_realtime(request)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome, lane_wait
    return engine.render_batch([request])[0], 0.0


class StageClock:
    """Where the first sentence's milliseconds go on the worker: `queue` (published by
    the API to taken by this worker), `pool` (to a speech thread), then each stage as it
    ends (plan, lookup, claim, lane, engine, store, fetch). Only the first sentence is
    timed (`done()` is a clock that records nothing): it is what the first byte waits for."""

    def __init__(self, message: Mapping[str, Any] | None) -> None:
        self.active = message is not None
        self.stages: dict[str, float] = {}
        self.last = time.time()
        if message is not None:
            published = float(message.get("published_at", 0) or 0)
            taken = float(message.get("taken_at", 0) or 0)
            if published and taken:
                self.stages["queue"] = (taken - published) * 1000
                self.stages["pool"] = (self.last - taken) * 1000

    @classmethod
    def done(cls) -> StageClock:
        return cls(None)

    def lap(self, stage: str) -> None:
        now = time.time()
        if self.active:
            self.stages[stage] = self.stages.get(stage, 0.0) + (now - self.last) * 1000
        self.last = now

    def split(self, first: str, first_seconds: float, rest: str) -> None:
        """The time since the last lap, `first_seconds` of it to `first`, the rest to `rest`."""
        now = time.time()
        if self.active:
            total = (now - self.last) * 1000
            part = min(first_seconds * 1000, total)
            self.stages[first] = part
            self.stages[rest] = total - part
        self.last = now

    def sent(self) -> dict[str, float]:
        """The stages, with `sent_at` (epoch seconds) for the API to time the stream."""
        if not self.active:
            return {}
        return {**{k: round(v, 2) for k, v in self.stages.items()}, "sent_at": time.time()}


def _pcm16(audio: AudioArray, pause: AudioArray) -> bytes:
    samples = np.concatenate([audio, pause]) if pause.size else audio
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
