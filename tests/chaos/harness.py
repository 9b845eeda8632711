"""The fault-injection harness: a deployment in real processes, a record of every state
change, and one check of the invariants that every scenario must hold.

A `Cluster` is render and assemble workers (`voicebatch worker`), a reconciler, a
PostgreSQL database with audit triggers (every status change of every job, item and chunk
is written to `chaos_transitions` by the database itself), a broker, and a versioned S3
bucket (so an overwritten object shows as a second version). The test engine writes a
line per render to a journal, so renders wasted on chunks that were rendered again are
counted even when the process that did them was killed; assemblers write a line per
assembly run to another (VOICEBATCH_ASSEMBLY_JOURNAL), so duplicate assemblies are too.

`Cluster.verify` checks, after the faults: every job reached the final state expected;
every chunk was marked done exactly once and no state moved backwards; no chunk is
leased, and none sat past its lease expiry for long while the scenario ran; every object
was written once; and each final file holds exactly the chunks its manifest lists, in
order, each at its place, with silence between them and the book made of its chapters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, load_settings
from pipeline.plan.documents import document_from_chapters
from pipeline.state import store
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.models import ChunkStatus, ItemStatus, JobStatus
from tests.chaos.audit import FINAL
from tests.chaos.files import PREFIX, check_files  # noqa: F401  (PREFIX: re-exported)
from tests.chaos.report import RESULTS, ScenarioResult
from tests.chaos.services import PrivateRedis
from tests.support.stack import VOICEBATCH, stop_processes
from tests.support.workers import submit
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The reconciler hands expired leases back within a round (1 s here); one that sits longer
# than this while the scenario runs breaks "no chunk stays leased past its expiry" (a
# database outage is the slack).
MAX_LEASE_OVERDUE_SECONDS = 10.0


@dataclass
class Cluster:
    """A deployment in processes, for one scenario."""

    scenario: str
    env: dict[str, str]
    logs: Path
    s3: S3Client
    bucket: str
    journal: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    jobs: list[uuid.UUID] = field(default_factory=list)
    faults: int = 0
    last_fault: float | None = None
    lease_overdue: float = 0.0
    # a scenario that takes the database down for longer raises it: leases run out while
    # the database that holds them is down, and are handed on after it is back
    max_lease_overdue: float = MAX_LEASE_OVERDUE_SECONDS
    redis: PrivateRedis | None = None  # the private broker, when the scenario restarts it
    _factory: sessionmaker[Session] | None = None
    _watching: threading.Event = field(default_factory=threading.Event)

    # --- processes --------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The Settings the worker processes build from the environment."""
        return load_settings(
            **{k[11:].lower(): v for k, v in self.env.items() if k.startswith("VOICEBATCH_")}
        )

    @property
    def factory(self) -> sessionmaker[Session]:
        if self._factory is None:
            self._factory = session_factory(create_db_engine(self.env["VOICEBATCH_DATABASE_URL"]))
        return self._factory

    def start(self, name: str, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        env = self.env | extra
        self.commands[name] = (list(args), env)
        return self._spawn(name)

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        args, env = self.commands[name]
        runs = sum(1 for p in self.logs.glob(f"{name}*.log"))
        log = (self.logs / f"{name}{'-' + str(runs) if runs else ''}.log").open("wb")
        process = subprocess.Popen(
            [VOICEBATCH, *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def render_worker(
        self,
        name: str = "render",
        *,
        pool: str = "threads",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        **extra: str,
    ) -> subprocess.Popen[bytes]:
        """`voicebatch worker --queues render`, with `env` and `extra` added to its
        environment."""
        return self.start(
            name, "worker", "--queues", "render", "--pool", pool,
            "--concurrency", str(concurrency), **(env or {}), **extra,
        )  # fmt: skip

    def assemble_worker(self, name: str = "assemble") -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "--queues", "assemble", "--concurrency", "1")

    def reconciler(
        self, name: str = "reconcile", *, interval: float = 1.0, grace: float = 2.0
    ) -> subprocess.Popen[bytes]:
        return self.start(name, "reconcile", "--interval", str(interval), "--grace", str(grace))

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start a process again as it was started (a supervisor's job)."""
        return self._spawn(name)

    def fault(self, count: int = 1) -> None:
        self.faults += count
        self.last_fault = time.monotonic()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        process.send_signal(sig)
        self.fault()
        if sig == signal.SIGKILL:
            process.wait(15)

    def log(self, name: str) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.logs.glob(f"{name}*.log"))
        )

    def tails(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-2500:]}" for n in self.processes)

    def stop(self) -> None:
        self._watching.set()
        stop_processes(self.processes.values())
        if self._factory is not None:
            bind = self._factory.kw["bind"]
            bind.dispose()

    # --- work -------------------------------------------------------------------------

    def submit(
        self, chapters: Sequence[Sequence[str]], *, title: str = "Chaos", publish: bool = True
    ) -> uuid.UUID:
        """A book of chapters (each a list of sentences, one chunk each), published."""
        settings = self.settings
        parsed = document_from_chapters(
            title,
            [(f"Part {n + 1}", "\n\n".join(s)) for n, s in enumerate(chapters)],
        )
        submitted = submit(self.factory, settings, parsed)
        if publish:
            CeleryDispatcher(create_celery(settings)).render(
                submitted.job_id, submitted.chunk_groups
            )
        self.jobs.append(submitted.job_id)
        return submitted.job_id

    def book(self, job: int, chapters: int, sentences: int) -> list[list[str]]:
        """Sentences unique to the job, so that no chunk is a cache hit of another's."""
        return [
            [f"Job {job} part {c} line {s} is spoken." for s in range(sentences)]
            for c in range(chapters)
        ]

    def counts(self) -> dict[str, int]:
        with transaction(self.factory) as session:
            rows = session.execute(
                text("SELECT status::text, count(*) FROM chunks GROUP BY status")
            ).all()
        return {status: int(n) for status, n in rows}

    def wait_until_leased(self, name: str, at_least: int = 1, seconds: float = 60) -> None:
        """Until `name`'s process holds leases: caught mid-batch."""
        deadline = time.monotonic() + seconds
        while self.counts().get("leased", 0) < at_least:
            process = self.processes[name]
            assert process.poll() is None and time.monotonic() < deadline, self.tails()
            time.sleep(0.05)

    def statuses(self) -> list[JobStatus]:
        with transaction(self.factory) as session:
            return [store.get_job(session, job).status for job in self.jobs]

    def wait_final(self, seconds: float = 120, *, supervise: Sequence[str] = ()) -> float:
        """Until every job is final; restarts the `supervise`d processes that die, as
        systemd or Kubernetes would (each death counts as a fault). Returns seconds from
        the last fault."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if all(status.final for status in self.statuses()):
                    break
            except Exception:  # the database itself may be the fault right now
                pass
            assert time.monotonic() < deadline, f"{self.counts()}\n{self.tails()}"
            for name in supervise:
                if self.processes[name].poll() is not None:
                    self.fault()  # the process died: count it, and start it again
                    self.restart(name)
            time.sleep(0.2)
        return time.monotonic() - (self.last_fault or time.monotonic())

    def watch_leases(self) -> None:
        """In the background: the longest any expired lease sat unclaimed."""

        def run() -> None:
            engine = create_db_engine(self.env["VOICEBATCH_DATABASE_URL"])
            while not self._watching.wait(0.5):
                try:
                    with engine.connect() as connection:
                        overdue = connection.execute(
                            text(
                                "SELECT extract(epoch FROM max(now() - lease_expires_at)) "
                                "FROM chunks WHERE status = 'leased' AND lease_expires_at < now()"
                            )
                        ).scalar()
                    self.lease_overdue = max(self.lease_overdue, float(overdue or 0.0))
                except Exception:
                    continue  # the database is down: that is some scenario's fault
            engine.dispose()

        threading.Thread(target=run, daemon=True).start()

    # --- the invariants ---------------------------------------------------------------

    def verify(
        self,
        *,
        recover_seconds: float | None,
        expect: dict[uuid.UUID, JobStatus] | None = None,
        failing: str | None = None,
        vanished: frozenset[uuid.UUID] = frozenset(),
        assembly_faulted: bool = False,
    ) -> ScenarioResult:
        """Assert every invariant; record and return the scenario's summary row.

        `expect`: job -> final status (default DONE); `failing`: a word whose chunks are
        meant to fail (poison), all others must be done; `vanished`: chunks whose object
        the scenario deleted, which go back from done to pending once and are done again;
        `assembly_faulted`: the scenario kills an assembler, or takes away what one reads,
        so an assembly may run again (otherwise none may)."""
        self._watching.set()
        expect = expect or {}
        lost = duplicates = chunks_total = 0
        with transaction(self.factory) as session:
            moves = session.execute(
                text("SELECT tbl, row_id, old, new FROM chaos_transitions ORDER BY id")
            ).all()
            jobs = {job: store.get_job(session, job) for job in self.jobs}
            layout = {
                job: [
                    (item, list(store.item_chunks(session, item_id=item.id)))
                    for item in store.job_items(session, job_id=job)
                ]
                for job in self.jobs
            }
        reopened = Counter(
            m.row_id
            for m in moves
            if m.row_id in vanished and (m.old, m.new) == ("done", "pending")
        )
        assert all(n == 1 for n in reopened.values()), f"reopened more than once: {reopened}"
        backwards = [
            m
            for m in moves
            if m.old in FINAL[m.tbl] and m.new != m.old and m.row_id not in reopened
        ]
        assert not backwards, f"states moved backwards: {backwards[:5]}"
        into_done = Counter(m.row_id for m in moves if m.tbl == "chunks" and m.new == "done")
        twice = {row: n for row, n in into_done.items() if n > 1 + reopened[row]}
        duplicates += len(twice) + len(backwards)
        for job_id, job in jobs.items():
            wanted = expect.get(job_id, JobStatus.DONE)
            if job.status != wanted:
                lost += 1
            for item, chunks in layout[job_id]:
                chunks_total += len(chunks)
                for chunk in chunks:
                    meant_to_fail = failing is not None and failing in chunk.text
                    good = ChunkStatus.FAILED if meant_to_fail else ChunkStatus.DONE
                    if chunk.status != good:
                        lost += 1
                    assert chunk.lease_owner is None, f"chunk {chunk.seq} still leased"
                    if chunk.status == ChunkStatus.DONE:
                        assert into_done[chunk.id] >= 1, "done without a recorded transition"
                if item.status == ItemStatus.DONE:
                    assert item.object_key is not None
        assert not twice, f"chunks marked done more than once: {twice}"
        versions = self._object_versions()
        rewritten = {key: n for key, n in versions.items() if n > 1}
        duplicates += len(rewritten)
        assert not rewritten, f"objects written more than once: {rewritten}"
        for job_id, job in jobs.items():
            if job.status in (JobStatus.DONE, JobStatus.PARTIALLY_FAILED):
                self._check_files(job_id, layout[job_id], versions)
        assert lost == 0, f"{lost} chunks, items or jobs lost\n{self.counts()}"
        assert self.lease_overdue <= self.max_lease_overdue, self.lease_overdue
        renders = Counter(line.split()[1] for line in self._journal())
        assemblies = Counter(" ".join(line.split()[1:3]) for line in self._assembly_journal())
        again = sum(assemblies.values()) - len(assemblies)
        assert assembly_faulted or again == 0, f"assemblies run more than once: {assemblies}"
        result = ScenarioResult(
            self.scenario,
            len(jobs),
            chunks_total,
            self.faults,
            duplicates,
            lost,
            sum(renders.values()) - len(renders),
            None if recover_seconds is None else round(recover_seconds, 1),
            round(self.lease_overdue, 1),
            again,
        )
        RESULTS.append(result)
        return result

    def _journal(self) -> list[str]:
        return self.journal.read_text().splitlines() if self.journal.exists() else []

    def _assembly_journal(self) -> list[str]:
        named = self.env.get("VOICEBATCH_ASSEMBLY_JOURNAL")
        path = Path(named) if named else None
        return path.read_text().splitlines() if path is not None and path.exists() else []

    def _object_versions(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                counts[entry["Key"]] += 1
        return dict(counts)

    def _get(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def _check_files(
        self, job_id: uuid.UUID, items: list[tuple[Any, list[Any]]], versions: dict[str, int]
    ) -> None:
        check_files(self._get, job_id, items, versions)


def base_env(**values: str) -> dict[str, str]:
    """The process environment minus the developer's VOICEBATCH_* variables, plus values."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    return base | values


# make_cluster(scenario, broker=..., **env), the chaos suite's fixture (tests/chaos/conftest.py)
MakeCluster = Callable[..., Cluster]
