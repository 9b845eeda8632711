"""Which content hashes already have audio: a fast index in front of the chunk store.

The database is the record (store.find_rendered_many); an index answers the common question
"is this chunk rendered?" without a query and a HEAD request, and lets two renderers
agree that only one of them renders a given chunk at a time. Every answer is a hint:
a missing or stale entry costs work, never correctness. An entry never outlives its
object for long: entries live no longer than the bucket's lifecycle keeps chunk audio
(`index_ttl_seconds`), and one whose object turned out to be gone is forgotten (an
assembler that found a chunk's object missing calls `forget`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pipeline.config import Settings
from pipeline.state.store import RenderedAudio

log = logging.getLogger(__name__)

WEEK_SECONDS = 7 * 24 * 3600


def index_ttl_seconds(settings: Settings) -> int:
    """How long an entry lives: a week, and never longer than the lifecycle rule keeps
    the chunk objects (`chunk_expire_days`, counted from the write the entry records)."""
    return min(WEEK_SECONDS, settings.chunk_expire_days * 24 * 3600)


class ChunkIndex(Protocol):
    """Batch calls: a render task asks about all of its chunks in one round trip."""

    def lookup(self, digests: Sequence[str]) -> dict[str, RenderedAudio]:
        """The audio recorded for those of `digests` this index knows."""

    def remember(self, found: Mapping[str, RenderedAudio]) -> None:
        """Record that these digests are rendered."""

    def forget(self, digests: Sequence[str]) -> None:
        """Drop these digests' entries: their objects are gone."""

    def claim(self, digests: Sequence[str], owner: str, seconds: int) -> set[str]:
        """The digests `owner` may render now: those nobody else said they are rendering."""

    def release(self, digests: Sequence[str], owner: str) -> None:
        """Give up claims (rendered, or failed)."""


RELEASE = (
    "for i, key in ipairs(KEYS) do "
    "if redis.call('get', key) == ARGV[1] then redis.call('del', key) end end return 0"
)


class RedisChunkIndex:
    """The index in Redis: `vb:chunk:<hash>` -> JSON, `vb:rendering:<hash>` -> owner.

    Entries expire (`ttl_seconds`, at most 7 days: index_ttl_seconds) so an index never
    outlives the chunk objects a bucket lifecycle rule deletes. A Redis error is logged
    and treated as a miss (or, for a claim, as granted): the database still knows.
    """

    def __init__(self, client: Any, *, ttl_seconds: int = WEEK_SECONDS) -> None:
        self.client = client
        self.ttl = ttl_seconds

    @classmethod
    def from_url(cls, url: str, *, ttl_seconds: int = WEEK_SECONDS) -> RedisChunkIndex:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, ttl_seconds=ttl_seconds)

    def forget(self, digests: Sequence[str]) -> None:
        if not digests:
            return
        try:
            self.client.delete(*[f"vb:chunk:{d}" for d in digests])
        except Exception as exc:
            log.warning("chunk index unavailable (%s); entries left to expire", exc)

    def lookup(self, digests: Sequence[str]) -> dict[str, RenderedAudio]:
        if not digests:
            return {}
        try:
            values = self.client.mget([f"vb:chunk:{d}" for d in digests])
        except Exception as exc:
            log.warning("chunk index unavailable (%s); asking the database", exc)
            return {}
        found = {}
        for digest, raw in zip(digests, values, strict=True):
            if raw is not None:
                data = json.loads(raw)
                found[digest] = RenderedAudio(
                    data["key"], float(data["duration"]), int(data["rate"])
                )
        return found

    def remember(self, found: Mapping[str, RenderedAudio]) -> None:
        if not found:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for digest, audio in found.items():
                value = json.dumps(
                    {"key": audio.object_key, "duration": audio.duration, "rate": audio.sample_rate}
                )
                pipe.set(f"vb:chunk:{digest}", value, ex=self.ttl)
            pipe.execute()
        except Exception as exc:
            log.warning("chunk index unavailable (%s); entries not written", exc)

    def claim(self, digests: Sequence[str], owner: str, seconds: int) -> set[str]:
        if not digests:
            return set()
        try:
            pipe = self.client.pipeline(transaction=False)
            for digest in digests:
                pipe.set(f"vb:rendering:{digest}", owner, nx=True, ex=seconds)
            granted = pipe.execute()
        except Exception as exc:
            log.warning("chunk index unavailable (%s); rendering without claims", exc)
            return set(digests)
        return {digest for digest, ok in zip(digests, granted, strict=True) if ok}

    def release(self, digests: Sequence[str], owner: str) -> None:
        if not digests:
            return
        try:
            # Only our own claims: compare and delete in one step on the server.
            self.client.eval(RELEASE, len(digests), *[f"vb:rendering:{d}" for d in digests], owner)
        except Exception as exc:
            log.warning("chunk index unavailable (%s); claims left to expire", exc)
