"""What the distributed benchmarks share: free ports, an S3 server (moto), a fresh
PostgreSQL database migrated with `voicebatch db upgrade`, and peak memory of a process.

The processes themselves (API, render and assemble workers) are started by
tests.support.stack.running_stack, as the e2e tests start them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx
from sqlalchemy import create_engine, text

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")


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
