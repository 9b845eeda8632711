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
        plan = plan_sentences(
            str(message["text"]),
            voice=str(message["voice"]),
            speed=float(message["speed"]),
            engine=self.engine,
            settings=self.settings,
        )
        known = self._lookup([s.content_hash for s in plan.sentences])
        for seq, sentence in enumerate(plan.sentences):
            cached = sentence.content_hash in known
            if cached:
                audio, rate = self._fetch(known[sentence.content_hash])
                stats.cached += 1
            else:
                audio, rate, cached = self._render(sentence, plan.voice, plan.params)
                stats.cached += int(cached)
                stats.rendered += int(not cached)
            stats.audio_seconds += len(audio) / rate
            pause = np.zeros(rate * sentence.pause_ms // 1000, np.float32)
            writer.send(
                SpeechEvent(
                    AUDIO, seq=seq, sample_rate=rate, pcm=_pcm16(audio, pause), cached=cached
                )
            )

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
        self, sentence: Sentence, voice: str, params: Mapping[str, ParamValue]
    ) -> tuple[AudioArray, int, bool]:
        """A sentence nobody had: rendered here, unless another renderer is rendering it
        right now (its claim in the index), whose audio is then waited for. Returns the
        audio, its rate and whether it came from someone else's render."""
        digest = sentence.content_hash
        if self.index is None:
            return (*self._synthesize(sentence, voice, params), False)
        deadline = time.monotonic() + min(30.0, self.settings.lease_seconds / 2)
        while not self.index.claim([digest], self.owner, self.settings.lease_seconds):
            found = self.index.lookup([digest])
            if digest in found:
                return (*self._fetch(found[digest]), True)
            if time.monotonic() > deadline:
                break  # the claim outlived its renderer: render it ourselves
            time.sleep(CLAIM_POLL_SECONDS)
        try:
            return (*self._synthesize(sentence, voice, params), False)
        finally:
            self.index.release([digest], self.owner)

    def _synthesize(
        self, sentence: Sentence, voice: str, params: Mapping[str, ParamValue]
    ) -> tuple[AudioArray, int]:
        request = SynthesisRequest(text=sentence.text, voice=voice, params=dict(params))
        result = _realtime(self.engine, request)
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
        return audio, result.sample_rate


def _realtime(engine: Engine, request: SynthesisRequest) -> SynthesisResult:
    """One request, ahead of batch work when a batcher is in front of the engine."""
    if isinstance(engine, BatchingEngine):
        outcome = engine.render_outcomes([request], realtime=True)[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    return engine.render_batch([request])[0]


def _pcm16(audio: AudioArray, pause: AudioArray) -> bytes:
    samples = np.concatenate([audio, pause]) if pause.size else audio
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
