"""One webhook attempt over HTTP: to the address the SSRF guard checked, redirects
re-checked hop by hop, bounded by connect and read timeouts.

The request goes to the checked IP address with the URL's host in the Host header and,
over TLS, as the server name (SNI and certificate check): the name is resolved once, by
the guard. No proxy from the environment is used (a proxy would resolve the name again).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from pipeline.webhooks.addresses import AddressPolicy, CallbackRefused, check_target

MAX_REDIRECTS = 3
USER_AGENT = "voicebatch-webhooks/1"
# Kept of a receiver's answer for the attempt record: enough to see what it said.
MAX_ANSWER_CHARS = 500


class Sent(enum.StrEnum):
    """How an attempt ended, as far as HTTP goes."""

    OK = "ok"  # 2xx
    GONE = "gone"  # 410: the receiver wants no more
    FAILED = "failed"  # any other status or a network error: try again
    TIMEOUT = "timeout"  # no connection or no answer in time: try again
    REFUSED = "refused"  # the URL (or a redirect) points where the guard refuses


@dataclass(frozen=True)
class SendResult:
    sent: Sent
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_ANSWER_CHARS]


def send(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    timeouts: Timeouts,
    policy: AddressPolicy,
) -> SendResult:
    """POST `body` with `headers` to `url`, following at most MAX_REDIRECTS redirects,
    each one's target checked like the first (a 301, 302 or 303 is followed with the same
    POST too: the receiver moved, the message did not change)."""
    timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for hop in range(MAX_REDIRECTS + 1):
            try:
                target = check_target(url, policy=policy)
            except CallbackRefused as exc:
                where = "" if hop == 0 else f"redirect to {url}: "
                return SendResult(Sent.REFUSED, error=f"{where}{exc.message}")
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            request = client.build_request(
                "POST",
                target.pinned_url,
                content=body,
                headers={
                    **headers,
                    "host": target.host_header,
                    "content-type": "application/json",
                    "user-agent": USER_AGENT,
                },
                extensions=extensions,
            )
            try:
                # Streamed: of the receiver's answer only its start is read, so a huge or
                # trickling body can neither fill memory nor hold the sender.
                response = client.send(request, stream=True)
                try:
                    code = response.status_code
                    location = response.headers.get("location")
                    said = "" if 200 <= code < 300 or code == 410 else _start_of(response)
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                return SendResult(Sent.TIMEOUT, error=f"timed out: {type(exc).__name__}")
            except httpx.HTTPError as exc:
                return SendResult(Sent.FAILED, error=_one_line(f"{type(exc).__name__}: {exc}"))
            if 200 <= code < 300:
                return SendResult(Sent.OK, code)
            if code == 410:
                return SendResult(Sent.GONE, code, "the receiver answered 410 Gone")
            if code in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            return SendResult(Sent.FAILED, code, _one_line(f"HTTP {code}: {said}"))
    return SendResult(Sent.FAILED, error=f"more than {MAX_REDIRECTS} redirects")


def _start_of(response: httpx.Response) -> str:
    """The first MAX_ANSWER_CHARS bytes of an answer's body, as text."""
    kept = b""
    for chunk in response.iter_bytes():
        kept += chunk
        if len(kept) >= MAX_ANSWER_CHARS:
            break
    return kept[:MAX_ANSWER_CHARS].decode("utf-8", errors="replace")
