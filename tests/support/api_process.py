"""A real `voicebatch api` process (uvicorn) on a test's own PostgreSQL database, with an
API key made for it, and a prober beside it: a process of its own that asks /healthz
every ~20 ms and samples the API's resident memory, so a test can say how the server
behaved while it sent something hostile. Used by the integration tests that need the
server as it really runs (its event loop, its thread pool, its memory)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.keys import create_key
from tests.support.services import free_port, wait_for_http
from tests.support.stack import VOICEBATCH, stop_processes

PROBER = Path(__file__).with_name("healthz_prober.py")


@dataclass
class ApiProcess:
    url: str
    key: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def running_api(
    database_url: str, folder: Path, settings: Mapping[str, str]
) -> Iterator[ApiProcess]:
    """`voicebatch api` on `database_url` (migrated) with the test-tone engine, a data
    folder and log in `folder`, a fresh API key and `settings` (VOICEBATCH_* variables;
    the developer's own are left out). Yields once /healthz answers; stopped after."""
    engine = create_db_engine(database_url)
    with transaction(session_factory(engine)) as session:
        key = create_key(session, name="api-process")[1]
    engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env.update(
        {
            "VOICEBATCH_DATABASE_URL": database_url,
            "VOICEBATCH_ENGINE": "test-tone",
            "VOICEBATCH_DATA_DIR": str(folder / "data"),
            **settings,
        }
    )
    log = folder / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [VOICEBATCH, "api", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,  # not the developer's folder, whose .env the settings would read
        )
    api = ApiProcess(f"http://127.0.0.1:{port}", key, log, process)
    try:
        wait_for_http(f"{api.url}/healthz", process, api.log_tail)
        yield api
    finally:
        stop_processes([process])


# --- the prober ------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One /healthz request: when it was sent and answered (time.monotonic(), the same
    clock in every process), and its status or the name of the error instead."""

    sent: float
    answered: float
    status: int | str

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


@dataclass(frozen=True)
class MemorySample:
    at: float
    rss_kb: int


class Prober:
    """Reads what healthz_prober.py writes: a line per probe ("P sent answered status")
    and per memory sample ("M at rss_kb")."""

    def __init__(self, process: subprocess.Popen[bytes], record: Path) -> None:
        self.process = process
        self.record = record

    def _lines(self) -> list[list[str]]:
        # The last line may be half written: keep only those that end.
        return [line.split() for line in self.record.read_text().split("\n")[:-1]]

    def probes(self) -> list[Probe]:
        return [
            Probe(float(a), float(b), int(s) if s.isdigit() else s)
            for kind, a, b, s in (line for line in self._lines() if len(line) == 4)
            if kind == "P"
        ]

    def memory(self) -> list[MemorySample]:
        return [
            MemorySample(float(at), int(kb))
            for kind, at, kb in (line for line in self._lines() if len(line) == 3)
            if kind == "M"
        ]

    def probes_overlapping(self, start: float, end: float, *, wait_s: float = 120) -> list[Probe]:
        """Every probe in flight at some moment of [start, end]. Waits (up to `wait_s`)
        until one sent after `end` has answered, so that a probe the server held up is
        counted with the latency it really had."""
        deadline = time.monotonic() + wait_s
        while True:
            probes = self.probes()
            if any(p.sent > end for p in probes):
                return [p for p in probes if p.sent <= end and p.answered >= start]
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the prober stopped answering")
            time.sleep(0.02)


@contextmanager
def probing(api: ApiProcess, record: Path) -> Iterator[Prober]:
    """The prober (healthz_prober.py, a process of its own so that the test's own work
    cannot delay it) asking `api`'s /healthz and sampling its memory until the end."""
    record.write_text("")
    process = subprocess.Popen(
        [sys.executable, str(PROBER), f"{api.url}/healthz", str(api.pid), str(record)]
    )
    prober = Prober(process, record)
    try:
        deadline = time.monotonic() + 30
        while not (prober.probes() and prober.memory()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the prober did not start")
            time.sleep(0.02)
        yield prober
    finally:
        process.terminate()
        process.wait(timeout=30)
