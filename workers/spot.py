"""Spot interruption watcher: asks the cloud's metadata server whether this instance is
about to be reclaimed, and drains the worker when it is.

AWS (IMDSv2): a session token from `PUT /latest/api/token`, then
`GET /latest/meta-data/spot/instance-action` (404 until the instance is marked, about two
minutes ahead) and `/latest/meta-data/events/recommendations/rebalance` (an early hint).
GCP: `GET /computeMetadata/v1/instance/preempted` with `Metadata-Flavor: Google` ("TRUE"
about 30 s ahead). The base URL is a setting, so tests run a fake metadata server.

An interruption or preemption notice drains the worker. A rebalance recommendation does
not: it says the instance is at a raised risk of interruption, not that one is coming,
and it stays posted, so a worker drained on it would be restarted by its supervisor
into the same recommendation and drained again, for ever. It is logged once and
counted (`voicebatch_spot_notices_total{kind="rebalance"}`), work goes on, and the
watcher keeps looking for the interruption notice, which still gives two minutes. Moving
capacity off a risky instance early is the autoscaler's job (an EC2 Auto Scaling group's
Capacity Rebalancing launches the replacement on the same recommendation).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from pipeline.config import Settings

log = logging.getLogger(__name__)

DEFAULT_URLS = {"aws": "http://169.254.169.254", "gcp": "http://metadata.google.internal"}
# How long before the machine goes each provider's notice comes: AWS's two-minute warning;
# GCP's preemption notice, which is also all the time its shutdown gives a SIGTERM.
NOTICE_SECONDS = {"aws": 120.0, "gcp": 30.0}
# What the stop itself needs after the grace: handing back, closing connections, exiting.
STOP_MARGIN_SECONDS = 5.0


def effective_grace(settings: Settings) -> float:
    """The stop grace a worker uses: VOICEBATCH_WORKER_GRACE_SECONDS, capped, when a spot
    provider is watched, so the stop ends inside its notice: the notice, minus a poll (the
    notice may be seen that late), minus a margin for the stop itself. The default 60 s
    becomes 20 s on GCP (30 - 5 - 5); on AWS it fits (120 - 5 - 5 = 110)."""
    grace = float(settings.worker_grace_seconds)
    notice = NOTICE_SECONDS.get(settings.spot_provider)
    if notice is None:
        return grace
    return min(grace, max(0.0, notice - settings.spot_poll_seconds - STOP_MARGIN_SECONDS))


@dataclass(frozen=True)
class SpotNotice:
    provider: str
    kind: str  # "interruption", "rebalance" or "preemption"
    detail: str


class SpotWatcher(threading.Thread):
    """Polls every `poll_seconds`; calls `on_notice` once, on the first interruption (or
    preemption) notice it sees, and `on_hint` once, on the first rebalance
    recommendation, after which it goes on watching."""

    def __init__(
        self,
        provider: str,
        *,
        on_notice: Callable[[SpotNotice], None],
        on_hint: Callable[[SpotNotice], None] | None = None,
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
        self.on_hint = on_hint
        self.hint: SpotNotice | None = None
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
            if notice is not None and notice.kind == "rebalance":
                if self.hint is None:
                    self.hint = notice
                    log.warning(
                        "spot rebalance recommendation from %s: %s; working on until an "
                        "interruption notice",
                        notice.provider,
                        notice.detail,
                    )
                    if self.on_hint is not None:
                        self.on_hint(notice)
                notice = None
            if notice is not None:
                self.notice = notice
                log.warning(
                    "spot %s notice from %s: %s", notice.kind, notice.provider, notice.detail
                )
                self.on_notice(notice)
                return
            self.stopped.wait(self.poll_seconds)
        self.http.close()
