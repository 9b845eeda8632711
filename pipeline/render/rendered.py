"""What every path that renders chunk audio shares: the batch renderer, QA's re-takes and
speech requests. Audio already rendered for a content hash, and the engine's audio made
ready to store."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.process import trim_silence
from pipeline.engines import SynthesisResult
from pipeline.engines.base import AudioArray
from pipeline.errors import PermanentError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.store import RenderedAudio
from pipeline.storage.base import ObjectStore


def recorded_audio(
    factory: sessionmaker[Session], objects: ObjectStore, digests: Sequence[str]
) -> dict[str, RenderedAudio]:
    """Audio the database records for these content hashes, where its object still exists
    (one query; one existence check a hit)."""
    with transaction(factory) as session:
        recorded = store.find_rendered_many(session, content_hashes=list(digests))
    return {d: a for d, a in recorded.items() if objects.exists(a.object_key)}


def audible(result: SynthesisResult, *, silent: str) -> AudioArray:
    """The engine's audio with its leading and trailing silence trimmed; PermanentError
    with the message `silent` when nothing audible is left."""
    audio = trim_silence(result.audio, result.sample_rate)
    if audio.size == 0:
        raise PermanentError(silent)
    return audio
