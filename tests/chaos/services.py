"""Private service instances that chaos tests may kill and restart, never the machine's
shared ones: a redis-server, a PostgreSQL cluster (initdb + pg_ctl), and a fault-injecting
HTTP proxy in front of the S3 server."""

from __future__ import annotations

import contextlib
import glob
import http.client
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.services import IN_CI, free_port


def _wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def _need(binary: str, where: list[str]) -> str:
    found = shutil.which(binary) or next((p for p in where if os.access(p, os.X_OK)), None)
    if found:
        return found
    message = f"{binary} not found: the chaos scenario needs a private instance"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class PrivateRedis:
    """A redis-server of this test's own, without persistence: a restart loses every
    queued message, as a Redis without AOF or RDB does."""

    def __init__(self, folder: Path) -> None:
        self.binary = _need("redis-server", ["/usr/bin/redis-server"])
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb, trust auth, its own port), that a
    test may restart or whose connections it may kill."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        where = [f"{b}/pg_ctl" for b in bins]
        self.pg_ctl = _need("pg_ctl", where)
        self.initdb = str(Path(self.pg_ctl).with_name("initdb"))
        self.port = free_port()
        # The server refuses to run as root: as root, run it as the postgres user, in a
        # folder that user owns (pytest's tmp_path is private to root).
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.folder = Path(tempfile.mkdtemp(prefix="voicebatch-chaos-pg-"))
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new database at the newest schema; returns its URL."""
        from sqlalchemy import create_engine, text

        from pipeline.state.db import create_db_engine, upgrade

        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        engine = create_db_engine(self.url(name))
        upgrade(engine)
        engine.dispose()
        return self.url(name)

    def kill_connections(self, database: str) -> int:
        """Terminate every session on `database` (a failover, a proxy that drops idle
        connections, an admin's pg_terminate_backend); returns how many."""
        from sqlalchemy import create_engine, text

        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            killed = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            ).scalar()
        admin.dispose()
        return int(killed or 0)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"),
            "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_seconds: float) -> None:
        """Stop at once (connections cut, like a crash or failover), stay down a while."""
        self.stop("immediate")
        time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class S3FaultProxy:
    """An HTTP proxy in front of the S3 server that fails a share of requests the ways S3
    does: 503 SlowDown before the request reaches storage, 500 after it did (the write
    happened, the client hears it failed), and answers slower than the client's timeout
    (its write lands late). Everything else is passed through untouched.

    `down` is an outage: while it is set every request is answered 503 ServiceUnavailable
    before it reaches storage (counted in `refused`)."""

    KINDS = ("503-before", "500-after", "timeout")

    def __init__(self, upstream: str, *, share: float, delay: float, seed: int = 7) -> None:
        target = urlsplit(upstream)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 80
        self.share, self.delay = share, delay
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self.enabled = True
        self.down = False
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = f"{proxy.host}:{proxy.port}"
                    connection.request(self.command, self.path, body=body, headers=headers)
                    reply = connection.getresponse()
                    return reply.status, reply.getheaders(), reply.read()
                finally:
                    connection.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str) -> None:
                body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self._answer(status, [("Content-Type", "application/xml")], body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.refuse():
                    self._error(503, "ServiceUnavailable")
                    return
                kind = proxy.draw()
                if kind == "503-before":
                    self._error(503, "SlowDown")
                    return
                if kind == "timeout":
                    time.sleep(proxy.delay)  # the client gave up; the request still lands
                status, headers, reply = self._forward(body)
                if kind == "500-after":
                    self._error(500, "InternalError")
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer(status, headers, reply)  # unless the client timed out and left

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def refuse(self) -> bool:
        with self.lock:
            self.refused += self.down
            return self.down

    def draw(self) -> str | None:
        with self.lock:
            self.requests += 1
            if not self.enabled or self.random.random() >= self.share:
                return None
            kind = self.random.choice(self.KINDS)
            self.faults[kind] += 1
            return kind

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
