"""A whole distributed deployment in processes: API, a render worker and an assemble
worker (real `celery worker`s via `voicebatch worker`), on the machine's PostgreSQL,
Redis or RabbitMQ, and an S3 server. Used by the e2e tests and the benchmark.

`Deployments` (the e2e suite's `deployments` fixture) makes one for a test module on a
database, private Redis databases and a bucket of its own; a Stack starts processes
beside it, scrapes their /metrics and runs the CLI against it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.postgres import PostgresAdmin, pg_url
from tests.support.services import free_port, private_redis_url, wait_for_http

VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")


def service_env(
    *, database_url: str, broker: str, redis_url: str, bucket: str, s3_endpoint: str, root: Path
) -> dict[str, str]:
    """The settings every process of a test deployment shares: its database, broker,
    Redis, a bucket on the S3 server and a data folder."""
    from tests.support.s3 import S3_KEY, S3_REGION

    return {
        "VOICEBATCH_DATABASE_URL": database_url,
        "VOICEBATCH_BROKER_URL": broker,
        "VOICEBATCH_REDIS_URL": redis_url,
        "VOICEBATCH_STORAGE_URL": f"s3://{bucket}/prod",
        "VOICEBATCH_S3_ENDPOINT_URL": s3_endpoint,
        "VOICEBATCH_S3_REGION": S3_REGION,
        "VOICEBATCH_S3_ACCESS_KEY_ID": S3_KEY,
        "VOICEBATCH_S3_SECRET_ACCESS_KEY": S3_KEY,
        "VOICEBATCH_DATA_DIR": str(root / "data"),
    }


def rabbit_vhost() -> tuple[str, list[list[str]]]:
    """A private RabbitMQ vhost for guest (created with rabbitmqctl); returns its name and
    the command that deletes it."""
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    name = f"voicebatch-{uuid.uuid4().hex[:10]}"
    subprocess.run([ctl, "add_vhost", name], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return name, [[ctl, "delete_vhost", name]]


@dataclass
class Stack:
    env: dict[str, str]
    api_url: str
    key: str
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)  # process name -> metrics URL
    database: str = ""  # its PostgreSQL database and bucket, when Deployments made it
    bucket: str = ""

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "VOICEBATCH_API_URL": self.api_url, "VOICEBATCH_API_KEY": self.key}
        return subprocess.run(
            [VOICEBATCH, *args], capture_output=True, text=True, env=env, timeout=timeout
        )

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [VOICEBATCH, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, **(env or {})},
        )

    def start_with_metrics(
        self, name: str, *args: str, port: int, env: dict[str, str] | None = None
    ) -> None:
        """Start `name` (as `start`) and wait until its /metrics on `port` answers."""
        self.start(name, *args, env=env)
        self.metrics[name] = metrics_url(port)
        wait_for_http(self.metrics[name], self.processes[name], self.tails)

    def scrape(self, name: str) -> str:
        """What `name`'s /metrics says now (tests.support.metrics reads it)."""
        return httpx.get(self.metrics[name], timeout=10).text

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tails(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.processes)

    def wait_for(self, name: str, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            process = self.processes[name]
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not become ready:\n{self.tails()}")
            time.sleep(0.2)

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def stop(self) -> None:
        stop_processes(self.processes.values())


def stop_processes(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after 30 s)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def metrics_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


@contextmanager
def running_stack(
    *,
    env: dict[str, str],
    logs: Path,
    api_port: int,
    render_concurrency: int | None = 2,
    assemble_concurrency: int = 1,
    render_args: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """`voicebatch db upgrade`-ed database assumed; creates a key, starts api + workers."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    base.update(env)
    created = subprocess.run(
        [VOICEBATCH, "keys", "create", "e2e"], capture_output=True, text=True, env=base, timeout=60
    )
    assert created.returncode == 0, created.stderr
    stack = Stack(base, f"http://127.0.0.1:{api_port}", created.stdout.strip(), logs)
    try:
        stack.start("api", "api", "--port", str(api_port))
        for name, queue, concurrency, extra in (
            ("worker-render", "render", render_concurrency, render_args),
            ("worker-assemble", "assemble", assemble_concurrency, ()),
        ):
            port = free_port()
            stack.metrics[name] = metrics_url(port)
            threads = ("--concurrency", str(concurrency)) if concurrency else ()
            stack.start(
                name, "worker", "--queues", queue, *threads, "--metrics-port", str(port), *extra
            )
        for name in ("worker-render", "worker-assemble"):
            stack.wait_for(name, " ready.")
        wait_for_http(f"{stack.api_url}/readyz", stack.processes["api"], stack.tails)
        yield stack
    finally:
        stack.stop()


@dataclass(frozen=True)
class Deployments:
    """Deploys a Stack for a test module on the session's PostgreSQL template and S3
    server (the e2e suite's `deployments` fixture)."""

    pg_admin: PostgresAdmin
    pg_template: str
    s3_endpoint: str

    @contextmanager
    def stack(
        self,
        root: Path,
        *,
        bucket_prefix: str,
        broker_db: int,
        redis_db: int,
        settings: Mapping[str, str],
        **options: Any,
    ) -> Iterator[Stack]:
        """A fresh copy of the migrated database, the private Redis databases `broker_db`
        (the broker) and `redis_db` emptied, a new bucket `bucket_prefix`-<random>, and
        the API and workers (running_stack, with `options`) on them, with service_env's
        settings and `settings` over them, logs and data in `root`. The database is
        dropped after."""
        import redis

        from tests.support.s3 import s3_client_for

        broker, redis_url = private_redis_url(broker_db), private_redis_url(redis_db)
        for url in (broker, redis_url):
            redis.Redis.from_url(url).flushdb()
        database = self.pg_admin.create(template=self.pg_template)
        bucket = f"{bucket_prefix}-{uuid.uuid4().hex[:12]}"
        s3_client_for(self.s3_endpoint).create_bucket(Bucket=bucket)
        env = service_env(
            database_url=pg_url(database),
            broker=broker,
            redis_url=redis_url,
            bucket=bucket,
            s3_endpoint=self.s3_endpoint,
            root=root,
        ) | dict(settings)
        try:
            with running_stack(env=env, logs=root, api_port=free_port(), **options) as running:
                running.database, running.bucket = database, bucket
                yield running
        finally:
            self.pg_admin.drop(database)
