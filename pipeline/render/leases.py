"""Who holds a lease, and keeping leases alive while work runs."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.storage.local import pid_alive

log = logging.getLogger(__name__)


def worker_id() -> str:
    """A lease owner name unique to this process and run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def gone_from_this_host(owner: str) -> bool:
    """Whether `owner` (a worker_id, host:pid:nonce) names a process of this host that no
    longer runs (killed, crashed): its leases can be taken back at once."""
    owner_host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return owner_host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


class LeaseHeartbeat:
    """Renews every lease `owner` holds, every `interval` seconds, while a batch renders.

    A lease then expires only when its renderer stops beating (killed, frozen, cut off),
    never because a healthy batch took longer than the lease. A renderer whose lease did
    expire cannot renew it back (renew_leases skips expired leases), nor commit.

    It is also the watchdog: with a `deadline` (seconds, max_batch_seconds), a batch still
    running past it is taken for a hung engine. The beats stop (nothing hung holds its
    leases for ever) and `on_overrun` runs, on this thread, to hand the chunks back.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        owner: str,
        ttl: timedelta,
        interval: float,
        *,
        deadline: float | None = None,
        on_overrun: Callable[[], None] | None = None,
    ) -> None:
        self.factory, self.owner, self.ttl, self.interval = factory, owner, ttl, interval
        self.deadline, self.on_overrun = deadline, on_overrun
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
        self.beats = 0
        self.overran = False

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():  # on_overrun may leave through here
            self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while True:
            wait = self.interval
            if self.deadline is not None:
                left = started + self.deadline - time.monotonic()
                if left <= 0:
                    self._overrun()
                    return
                wait = min(wait, left)
            if self._stop.wait(wait):
                return
            if self.deadline is not None and time.monotonic() - started >= self.deadline:
                continue  # past the deadline: no beat, the watchdog acts
            try:
                with transaction(self.factory) as session:
                    store.renew_leases(session, owner=self.owner, ttl=self.ttl)
                self.beats += 1
            except Exception as exc:  # the database blinked: the next beat tries again
                log.warning("could not renew the leases of %s: %s", self.owner, exc)

    def _overrun(self) -> None:
        self.overran = True
        log.critical(
            "a batch of %s ran past %.0f s: its leases are not renewed",
            self.owner,
            self.deadline or 0,
        )
        if self.on_overrun is not None:
            self.on_overrun()
