"""How a speech request's audio gets from the worker back to the API: a Redis stream
per request, `vb:speech:<request id>`.

The worker appends one entry per sentence (XADD: its PCM, 16-bit little-endian mono at
the engine's rate, with the pause that follows it, and whether it came from the chunk
cache), then an `end` entry, or an `error` entry that ends the response with the
reason. Every XADD renews the key's expiry (`speech_stream_ttl_seconds`), so a stream
whose reader went away is gone a few minutes after its last sentence; the API deletes
the key once it has read the end. The API reads with a blocking XREAD from the last id
it saw: entries are never lost between reads, and a reader that comes late (the worker
was quick) still finds every sentence.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

AUDIO, END, ERROR = "audio", "end", "error"


def stream_key(request_id: str) -> str:
    return f"vb:speech:{request_id}"


@dataclass(frozen=True)
class SpeechEvent:
    """One entry of a request's stream."""

    kind: str  # audio, end or error
    seq: int = 0
    sample_rate: int = 0
    pcm: bytes = b""  # int16 little-endian mono
    cached: bool = False
    message: str = ""
    # the first sentence's stage timings on the worker (ms), and when it was sent (epoch
    # seconds): the API reports them in its Server-Timing header
    timings: dict[str, float] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seq": self.seq,
            "rate": self.sample_rate,
            "pcm": self.pcm,
            "cached": int(self.cached),
            "message": self.message,
            "timings": json.dumps(self.timings) if self.timings else "",
        }

    @classmethod
    def parse(cls, fields: dict[bytes, bytes]) -> SpeechEvent:
        return cls(
            kind=fields[b"kind"].decode(),
            seq=int(fields[b"seq"]),
            sample_rate=int(fields[b"rate"]),
            pcm=fields[b"pcm"],
            cached=fields[b"cached"] == b"1",
            message=fields[b"message"].decode(errors="replace"),
            timings=_timings(fields.get(b"timings", b"")),
        )


def _timings(raw: bytes) -> dict[str, float]:
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): float(v) for k, v in parsed.items() if isinstance(v, int | float)}


class SpeechWriter:
    """The worker's end: append events, renewing the stream's expiry each time."""

    def __init__(self, client: Any, request_id: str, *, ttl_seconds: int) -> None:
        self.client = client
        self.key = stream_key(request_id)
        self.ttl = ttl_seconds

    def send(self, event: SpeechEvent) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.key, event.fields())
        pipe.expire(self.key, self.ttl)
        pipe.execute()


class SpeechReader:
    """The API's end: the events in order, each call blocking up to `block_ms` for more."""

    def __init__(self, client: Any, request_id: str) -> None:
        self.client = client
        self.key = stream_key(request_id)
        self.last_id = "0-0"

    def read(self, block_ms: int) -> list[SpeechEvent]:
        """The events after the last one read; [] when none came within `block_ms`."""
        answer = self.client.xread({self.key: self.last_id}, block=block_ms, count=64)
        events = []
        for _key, entries in answer or []:
            for entry_id, fields in entries:
                self.last_id = entry_id
                events.append(SpeechEvent.parse(fields))
        return events

    def events(self, *, wait_seconds: float, block_ms: int = 1000) -> Iterator[SpeechEvent]:
        """Every event until `end` or `error`; a TimeoutError when none came for
        `wait_seconds` (no worker took the request, or it died)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            batch = self.read(block_ms)
            if batch:
                deadline = time.monotonic() + wait_seconds
            for event in batch:
                yield event
                if event.kind in (END, ERROR):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no audio for {wait_seconds:g} s")

    def delete(self) -> None:
        try:
            self.client.delete(self.key)
        except Exception as exc:  # it expires anyway
            log.warning("could not delete %s (%s); it expires", self.key, exc)
