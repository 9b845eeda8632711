"""Spot interruption watcher: asks the cloud's metadata server whether this instance is
about to be reclaimed, and drains the worker when it is.

AWS (IMDSv2): a session token from `PUT /latest/api/token`, then
`GET /latest/meta-data/spot/instance-action` (404 until the instance is marked, about two
minutes ahead) and `/latest/meta-data/events/recommendations/rebalance` (an early hint).
GCP: `GET /computeMetadata/v1/instance/preempted` with `Metadata-Flavor: Google` ("TRUE"
about 30 s ahead). The base URL is a setting, so tests run a fake metadata server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

DEFAULT_URLS = {"aws": "http://169.254.169.254", "gcp": "http://metadata.google.internal"}


@dataclass(frozen=True)
class SpotNotice:
    provider: str
    kind: str  # "interruption", "rebalance" or "preemption"
    detail: str


class SpotWatcher(threading.Thread):
    """Polls every `poll_seconds`; calls `on_notice` once, on the first notice it sees."""

    def __init__(
        self,
        provider: str,
        *,
        on_notice: Callable[[SpotNotice], None],
        base_url: str | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__(name="spot-watcher", daemon=True)
        if provider not in DEFAULT_URLS:
            raise ValueError(f"unknown spot provider {provider!r}")
        self.provider = provider
        self.base = (base_url or DEFAULT_URLS[provider]).rstrip("/")
        self.poll_seconds = poll_seconds
        self.on_notice = on_notice
        self.stopped = threading.Event()
        self.notice: SpotNotice | None = None
        self.http = httpx.Client(timeout=2.0)

    def stop(self) -> None:
        self.stopped.set()

    def check(self) -> SpotNotice | None:
        """One look at the metadata server; None if no notice (or it cannot be reached)."""
        try:
            return self._check_aws() if self.provider == "aws" else self._check_gcp()
        except httpx.HTTPError as exc:
            log.debug("metadata server unreachable: %s", exc)
            return None

    def _check_aws(self) -> SpotNotice | None:
        token = self.http.put(
            f"{self.base}/latest/api/token",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
        )
        token.raise_for_status()
        headers = {"X-aws-ec2-metadata-token": token.text}
        action = self.http.get(
            f"{self.base}/latest/meta-data/spot/instance-action", headers=headers
        )
        if action.status_code == 200:
            return SpotNotice("aws", "interruption", action.text)
        rebalance = self.http.get(
            f"{self.base}/latest/meta-data/events/recommendations/rebalance", headers=headers
        )
        if rebalance.status_code == 200:
            return SpotNotice("aws", "rebalance", rebalance.text)
        return None

    def _check_gcp(self) -> SpotNotice | None:
        answer = self.http.get(
            f"{self.base}/computeMetadata/v1/instance/preempted",
            headers={"Metadata-Flavor": "Google"},
        )
        if answer.status_code == 200 and answer.text.strip().upper() == "TRUE":
            return SpotNotice("gcp", "preemption", answer.text.strip())
        return None

    def run(self) -> None:
        while not self.stopped.is_set():
            notice = self.check()
            if notice is not None:
                self.notice = notice
                log.warning(
                    "spot %s notice from %s: %s", notice.kind, notice.provider, notice.detail
                )
                self.on_notice(notice)
                return
            self.stopped.wait(self.poll_seconds)
        self.http.close()
