"""Rate limits in Redis (GCRA, one atomic script), and the request body size limit."""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PERIOD_SECONDS = 60.0

# GCRA (the generic cell rate algorithm): one number per name, the theoretical arrival
# time (TAT) of the next request. A request at `now` is allowed when the TAT it would
# push forward stays within one period of `now`; so at most `limit` requests pass in
# any 60 seconds, whichever second they start at (a calendar-minute window let twice
# the limit through across a minute boundary: issue 20). Read, decide and write happen
# in one script, so concurrent API processes cannot both take the last slot. The clock
# is Redis's own (TIME), shared by every API process, unless the caller gives `now`.
GCRA = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - period
if now < allow_at then
  return string.format('%.6f', allow_at - now)
end
redis.call('SET', KEYS[1], string.format('%.6f', next_tat), 'PX', math.ceil((next_tat - now) * 1000) + 1000)
return '0'
"""


class RateLimiter:
    """At most `per_minute` requests per name in any 60 seconds (GCRA in Redis).

    Names are an API key's id, a token's subject, or `addr:<client address>` for
    requests without valid credentials. Redis being down lets requests through
    (logged): rate limits protect the service, they are not worth an outage of their own.
    """

    def __init__(self, client: Any, per_minute: int) -> None:
        self.client = client
        self.per_minute = per_minute
        self._script = client.register_script(GCRA)

    def hit(
        self, name: str, now: float | None = None, *, per_minute: int | None = None
    ) -> int | None:
        """Count one request; None if allowed, else the whole seconds to wait.

        `now` (Unix seconds) is for tests; by default the script reads Redis's clock."""
        limit = per_minute or self.per_minute
        try:
            wait = float(
                self._script(
                    keys=[f"vb:gcra:{name}"],
                    args=[
                        -1 if now is None else repr(now),
                        repr(PERIOD_SECONDS / limit),
                        repr(PERIOD_SECONDS),
                    ],
                )
            )
        except Exception as exc:
            log.warning("rate limiter unavailable (%s); request allowed", exc)
            return None
        if wait <= 0:
            return None
        return max(1, int(wait + 0.999))


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
