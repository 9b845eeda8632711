"""Distributed bookkeeping throughput: chunks per second through API -> broker -> worker ->
PostgreSQL -> S3, with the test engine (so no real audio work), for Redis and RabbitMQ.

    python bench/bench_distributed.py [--chunks 2000] [--brokers redis,rabbitmq]
                                      [--write docs/benchmarks.md]

Everything runs on this machine, in separate processes, as a deployment would: the API
(`voicebatch api`), one render worker (threads) and one assemble worker (`voicebatch
worker`), the machine's PostgreSQL, Redis and RabbitMQ, and an S3 server (moto). One job of
N distinct one-word chunks is submitted; the clock runs from the submit request until the
database records every chunk done (render throughput), and until the job is done
(assembly included). In the same run, for each broker:

- naive: the same job with one chunk per message (`VOICEBATCH_TASK_CHUNKS=1`);
- S3 ceiling: PUTs of the same number of chunk-sized objects from as many threads as the
  worker runs, straight to the same S3 server: the storage a render worker cannot beat.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.bench_embedded import cpu_name  # noqa: E402
from bench.deployment import free_port, s3_client, start_s3  # noqa: E402
from tests.support.stack import rabbit_vhost, running_stack  # noqa: E402

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
THREADS = 4


def book(chunks: int) -> str:
    """N distinct one-word sentences in four chapters (chunk_max_chars=40: one per chunk)."""
    per = chunks // 4
    parts = ["# Bench\n"]
    for chapter in range(4):
        parts.append(f"\n## Part {chapter + 1}\n\n")
        # one sentence a paragraph: a chunk never crosses a paragraph, so one chunk each
        parts.append("\n\n".join(f"W{chapter}x{i}." for i in range(per)) + "\n")
    return "".join(parts)


def run_job(
    broker: str, chunks: int, task_chunks: int, s3_endpoint: str, logs: Path, *, local: bool = False
) -> dict[str, float]:
    database = f"voicebatch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    cleanup: list[list[str]] = []
    if broker == "redis":
        broker_url = "redis://127.0.0.1:6379/14"
        redis.Redis.from_url(broker_url).flushdb()
    else:
        vhost, cleanup = rabbit_vhost()
        broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    redis.Redis.from_url("redis://127.0.0.1:6379/15").flushdb()
    env = {
        "VOICEBATCH_DATABASE_URL": f"{PG}/{database}",
        "VOICEBATCH_BROKER_URL": broker_url,
        "VOICEBATCH_REDIS_URL": "redis://127.0.0.1:6379/15",
        # local: a folder every process shares (one host, or NFS/EFS), no S3 in the path
        "VOICEBATCH_STORAGE_URL": str(logs / "objects") if local else f"s3://{bucket}/bench",
        "VOICEBATCH_S3_ENDPOINT_URL": s3_endpoint,
        "VOICEBATCH_S3_ACCESS_KEY_ID": "bench",
        "VOICEBATCH_S3_SECRET_ACCESS_KEY": "bench",
        "VOICEBATCH_ENGINE": "test-tone",
        "VOICEBATCH_CHUNK_MAX_CHARS": "40",
        "VOICEBATCH_READ_TITLES": "false",
        "VOICEBATCH_OUTPUT_FORMAT": "flac",
        "VOICEBATCH_TASK_CHUNKS": str(task_chunks),
        "VOICEBATCH_DATA_DIR": str(logs / "data"),
        "VOICEBATCH_API_RATE_LIMIT": "100000",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    subprocess.run(
        [str(Path(sys.executable).parent / "voicebatch"), "db", "upgrade"],
        env={**base, **env},
        check=True,
        capture_output=True,
    )
    logs.mkdir(parents=True, exist_ok=True)
    source = logs / "bench.md"
    source.write_text(book(chunks))
    try:
        with (
            running_stack(
                env=env, logs=logs, api_port=free_port(), render_concurrency=THREADS
            ) as stack,
            stack.http() as http,
        ):
            started = time.perf_counter()
            created = http.post("/v1/jobs", files={"file": ("bench.md", source.read_bytes())})
            assert created.status_code == 201, created.text
            submitted = time.perf_counter() - started
            job = created.json()
            total = job["chunks"]["total"]
            rendered = 0.0
            while True:
                info = http.get(f"/v1/jobs/{job['id']}").json()
                if not rendered and info["chunks"]["done"] + info["chunks"]["failed"] == total:
                    rendered = time.perf_counter() - started
                if info["status"] in ("done", "failed", "partially_failed"):
                    break
                time.sleep(0.05)
            finished = time.perf_counter() - started
            assert info["status"] == "done", info
            return {
                "chunks": total,
                "submit": submitted,
                "rendered": rendered,
                "finished": finished,
                "rate": total / rendered,
            }
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        for command in cleanup:
            subprocess.run(command, capture_output=True)


def s3_ceiling(endpoint: str, count: int) -> float:
    """PUTs per second of chunk-sized (~20 KB, as the test engine's one-word chunks) objects."""
    client = s3_client(endpoint)
    bucket = f"ceiling-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    body = os.urandom(20_000)
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(
            pool.map(
                lambda i: client.put_object(
                    Bucket=bucket, Key=f"c/{i}.wav", Body=body, IfNoneMatch="*"
                ),
                range(count),
            )
        )  # type: ignore[attr-defined]
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--brokers", default="redis,rabbitmq")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    port = free_port()
    server = start_s3(port)
    endpoint = f"http://127.0.0.1:{port}"
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="voicebatch-bench-") as folder:
            for broker in args.brokers.split(","):
                ours = run_job(broker, args.chunks, 16, endpoint, Path(folder) / f"{broker}-ours")
                naive = run_job(broker, args.chunks, 1, endpoint, Path(folder) / f"{broker}-naive")
                local = run_job(
                    broker, args.chunks, 16, endpoint, Path(folder) / f"{broker}-local", local=True
                )
                ceiling = s3_ceiling(endpoint, ours["chunks"])
                print(broker, ours, naive, local, f"S3 ceiling {ceiling:.0f}/s", flush=True)
                rows.append(
                    f"| {broker} | {ours['chunks']:.0f} | **{ours['rate']:.0f}** "
                    f"({ours['rendered']:.1f} s) | {naive['rate']:.0f} ({naive['rendered']:.1f} s) "
                    f"| {ours['rate'] / naive['rate']:.2f} | {ceiling:.0f} | {ours['rate'] / ceiling:.2f} "
                    f"| **{local['rate']:.0f}** ({local['rendered']:.1f} s) "
                    f"| {ours['finished']:.1f} s | {ours['submit']:.2f} s |"
                )
    finally:
        server.terminate()
        server.wait()
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    report = f"""
## Distributed bookkeeping: chunks/s through API, broker, worker, PostgreSQL, S3 — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()},
  celery {metadata.version("celery")}, PostgreSQL and Redis and RabbitMQ {shutil.which("rabbitmqctl") and "3.10"} on this machine,
  S3 = moto server; commit {git.stdout.strip() or "?"}
- Command: `make bench` (`python bench/bench_distributed.py --chunks {args.chunks}`)
- One job of distinct one-word chunks (test engine, ~0.4 s of audio each), one render
  worker with {THREADS} threads and one assemble worker, every process on these 2 cores.
  Target: at least 300 chunks/s.

| broker | chunks | ours, S3: 16 chunks/message | naive, S3: 1 chunk/message | ours / naive | S3 server ceiling (PUT/s, {THREADS} threads) | ours / ceiling | ours, shared folder instead of S3 | job done, S3 (incl. assembly) | submit request |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
"""
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
