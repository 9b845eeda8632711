"""Reaching the services tests need: a test that needs one skips on a laptop without it
and fails when CI is set; free ports for the private ones tests start."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest

IN_CI = bool(os.environ.get("CI"))


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or, with CI set, fail) when a service does not answer on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} not reachable on {host}:{port} ({exc})"
        if IN_CI:
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], describe: Callable[[], str], timeout: float = 60
) -> None:
    """Wait until `url` answers 200; AssertionError with `describe()` (its log, say) if
    `process` exits or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer:\n{describe()}")
        time.sleep(0.2)


_PRIVATE_REDIS: tuple[subprocess.Popen[bytes], int] | None = None


def private_redis_url(db: int = 0) -> str:
    """`redis://` URL of database `db` on a redis-server of this test process's own.

    Started on first use, without persistence, and stopped when the process exits: two
    suites running at once on one machine never share (or flush) each other's keys, as
    they would on the machine's Redis on 6379."""
    global _PRIVATE_REDIS
    if _PRIVATE_REDIS is None or _PRIVATE_REDIS[0].poll() is not None:
        import atexit
        import shutil
        import tempfile

        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(binary, os.X_OK):
            message = "redis-server not found: tests that need Redis start a private one"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        port = free_port()
        folder = tempfile.mkdtemp(prefix="vb-redis-")
        process = subprocess.Popen(
            [
                *(binary, "--port", str(port), "--bind", "127.0.0.1", "--databases", "16"),
                *("--save", "", "--appendonly", "no", "--dir", folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        atexit.register(_stop_private_redis, process)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"private redis-server on {port} did not start") from None
                time.sleep(0.05)
        _PRIVATE_REDIS = (process, port)
    return f"redis://127.0.0.1:{_PRIVATE_REDIS[1]}/{db}"


def _stop_private_redis(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
