"""What the distributed benchmarks share: free ports, an S3 server (moto), a fresh
PostgreSQL database migrated with `voicebatch db upgrade`, the environment a deployment
runs with, the commit measured, and a process's peak memory and CPU time.

The processes themselves (API, render and assemble workers) are started by
tests.support.stack.running_stack, as the e2e tests start them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
from sqlalchemy import create_engine, text

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")
ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_s3(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


@dataclass(frozen=True)
class Scratch:
    """What a distributed benchmark runs against: an S3 server and a scratch folder."""

    s3_endpoint: str
    s3_pid: int
    folder: Path


@contextmanager
def s3_and_scratch() -> Iterator[Scratch]:
    """A moto S3 server and a scratch folder, both gone afterwards: what every
    distributed benchmark's main() starts with."""
    port = free_port()
    server = start_s3(port)
    try:
        with tempfile.TemporaryDirectory(prefix="voicebatch-bench-") as folder:
            yield Scratch(f"http://127.0.0.1:{port}", server.pid, Path(folder))
    finally:
        server.terminate()
        server.wait()


def deployment_env(
    *,
    database_url: str,
    broker_url: str,
    redis_url: str,
    storage_url: str,
    s3_endpoint: str,
    data_dir: Path,
    task_chunks: int,
    **extra: str,
) -> dict[str, str]:
    """The VOICEBATCH_* settings every process of a bench deployment gets (test engine,
    titles not read, no rate limit to speak of), plus `extra` (name without the prefix)."""
    env = {
        "VOICEBATCH_DATABASE_URL": database_url,
        "VOICEBATCH_BROKER_URL": broker_url,
        "VOICEBATCH_REDIS_URL": redis_url,
        "VOICEBATCH_STORAGE_URL": storage_url,
        "VOICEBATCH_S3_ENDPOINT_URL": s3_endpoint,
        "VOICEBATCH_S3_ACCESS_KEY_ID": "bench",
        "VOICEBATCH_S3_SECRET_ACCESS_KEY": "bench",
        "VOICEBATCH_ENGINE": "test-tone",
        "VOICEBATCH_READ_TITLES": "false",
        "VOICEBATCH_TASK_CHUNKS": str(task_chunks),
        "VOICEBATCH_DATA_DIR": str(data_dir),
        "VOICEBATCH_API_RATE_LIMIT": "100000",
    }
    env.update({f"VOICEBATCH_{name.upper()}": value for name, value in extra.items()})
    return env


def git_commit() -> str:
    """The short commit the benchmark ran on ("?" outside a checkout)."""
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return git.stdout.strip() or "?"


def s3_client(endpoint: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    database = f"voicebatch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield f"{PG}/{database}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def upgrade(env: dict[str, str]) -> None:
    """`voicebatch db upgrade` with these settings (the deployment's prestart step)."""
    subprocess.run([VOICEBATCH, "db", "upgrade"], env=env, check=True, capture_output=True)


def peak_rss_mib(pid: int) -> float:
    """A live process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a live process and its live children."""
    total = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS
