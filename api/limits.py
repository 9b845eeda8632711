"""Per-key rate limits in Redis, and the request body size limit."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class RateLimiter:
    """A fixed one-minute window per key: INCR a counter that expires with its window.

    Redis being down lets requests through (logged): rate limits protect the service,
    they are not worth an outage of their own.
    """

    def __init__(self, client: Any, per_minute: int) -> None:
        self.client = client
        self.per_minute = per_minute

    def hit(self, key_id: str, now: float | None = None) -> int | None:
        """Count one request; None if allowed, else the seconds until the window resets."""
        now = time.time() if now is None else now
        window = int(now // 60)
        name = f"vb:rate:{key_id}:{window}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(name)
            pipe.expire(name, 61)
            count = int(pipe.execute()[0])
        except Exception as exc:
            log.warning("rate limiter unavailable (%s); request allowed", exc)
            return None
        if count <= self.per_minute:
            return None
        return max(1, int((window + 1) * 60 - now + 0.999))


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        import json

        body = json.dumps(
            {
                "error": {
                    "message": f"request body is over the {self.max_bytes} byte limit",
                    "field": "body",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
