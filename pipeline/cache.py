"""Which content hashes already have audio: a fast index in front of the chunk store.

The database is the record (store.find_rendered); an index answers the common question
"is this chunk rendered?" without a query and a HEAD request, and lets two renderers
agree that only one of them renders a given chunk at a time. Every answer is a hint:
a missing or stale entry costs work, never correctness.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from pipeline.state.store import RenderedAudio

log = logging.getLogger(__name__)


class ChunkIndex(Protocol):
    def get(self, digest: str) -> RenderedAudio | None:
        """Audio recorded for `digest`, or None if not known here."""

    def put(self, digest: str, audio: RenderedAudio) -> None:
        """Remember that `digest` is rendered at `audio.object_key`."""

    def claim(self, digest: str, owner: str, seconds: int) -> bool:
        """True if `owner` may render `digest` now: nobody else said they are rendering it."""

    def release(self, digest: str, owner: str) -> None:
        """Give up a claim (rendered, or failed)."""


class RedisChunkIndex:
    """The index in Redis: `vb:chunk:<hash>` -> JSON, `vb:rendering:<hash>` -> owner.

    Entries expire (`ttl_seconds`, default 7 days) so an index never outlives the chunk
    objects a bucket lifecycle rule deletes. A Redis error is logged and treated as a
    miss: the database still knows.
    """

    def __init__(self, client: Any, *, ttl_seconds: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.ttl = ttl_seconds

    @classmethod
    def from_url(cls, url: str) -> RedisChunkIndex:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5))

    def get(self, digest: str) -> RenderedAudio | None:
        try:
            raw = self.client.get(f"vb:chunk:{digest}")
        except Exception as exc:
            log.warning("chunk index unavailable (%s); asking the database", exc)
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        return RenderedAudio(data["key"], float(data["duration"]), int(data["rate"]))

    def put(self, digest: str, audio: RenderedAudio) -> None:
        value = json.dumps(
            {"key": audio.object_key, "duration": audio.duration, "rate": audio.sample_rate}
        )
        try:
            self.client.set(f"vb:chunk:{digest}", value, ex=self.ttl)
        except Exception as exc:
            log.warning("chunk index unavailable (%s); entry not written", exc)

    def claim(self, digest: str, owner: str, seconds: int) -> bool:
        try:
            return bool(self.client.set(f"vb:rendering:{digest}", owner, nx=True, ex=seconds))
        except Exception as exc:
            log.warning("chunk index unavailable (%s); rendering without a claim", exc)
            return True

    def release(self, digest: str, owner: str) -> None:
        # Only our own claim: compare and delete in one step.
        script = (
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('del', KEYS[1]) else return 0 end"
        )
        try:
            self.client.eval(script, 1, f"vb:rendering:{digest}", owner)
        except Exception as exc:
            log.warning("chunk index unavailable (%s); claim left to expire", exc)
