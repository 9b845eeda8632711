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
