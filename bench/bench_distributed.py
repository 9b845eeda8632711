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
import itertools
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpu_name  # noqa: E402
from bench.deployment import (  # noqa: E402
    Scratch,
    deployment_env,
    free_port,
    fresh_database,
    git_commit,
    s3_and_scratch,
    s3_client,
    upgrade,
)
from tests.support.services import private_redis_url  # noqa: E402
from tests.support.stack import rabbit_vhost, running_stack  # noqa: E402

THREADS = 4
_REDIS_DATABASES = itertools.count(0, 2)  # two a run (broker, chunk index), fresh each


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
    broker: str, chunks: int, task_chunks: int, scratch: Scratch, name: str, *, local: bool = False
) -> dict[str, float]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3_client(scratch.s3_endpoint).create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    logs = scratch.folder / name
    logs.mkdir(parents=True, exist_ok=True)
    cleanup: list[list[str]] = []
    # A private redis-server (a fresh database each run), never the machine's 6379.
    index = next(_REDIS_DATABASES) % 16
    if broker == "redis":
        broker_url = private_redis_url(index)
    else:
        vhost, cleanup = rabbit_vhost()
        broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        with fresh_database() as database_url:
            env = deployment_env(
                database_url=database_url,
                broker_url=broker_url,
                redis_url=private_redis_url(index + 1),
                # local: a folder every process shares (one host, or NFS/EFS), no S3 in the path
                storage_url=str(logs / "objects") if local else f"s3://{bucket}/bench",
                s3_endpoint=scratch.s3_endpoint,
                data_dir=logs / "data",
                task_chunks=task_chunks,
                chunk_max_chars="40",
                output_format="flac",
            )
            upgrade(
                {**{k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}, **env}
            )
            source = logs / "bench.md"
            source.write_text(book(chunks))
            return _timed_job(env, logs, source)
    finally:
        for command in cleanup:
            subprocess.run(command, capture_output=True)


def _timed_job(env: dict[str, str], logs: Path, source: Path) -> dict[str, float]:
    """Submit the book; the clock runs until every chunk is final, then until the job is done."""
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


def s3_ceiling(endpoint: str, count: int) -> float:
    """PUTs per second of chunk-sized (~20 KB, as the test engine's one-word chunks) objects."""
    client: Any = s3_client(endpoint)
    bucket = f"ceiling-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    body = os.urandom(20_000)

    def put(i: int) -> None:
        client.put_object(Bucket=bucket, Key=f"c/{i}.wav", Body=body, IfNoneMatch="*")

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, range(count)))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--brokers", default="redis,rabbitmq")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rows = []
    with s3_and_scratch() as scratch:
        for broker in args.brokers.split(","):
            ours = run_job(broker, args.chunks, 16, scratch, f"{broker}-ours")
            naive = run_job(broker, args.chunks, 1, scratch, f"{broker}-naive")
            local = run_job(broker, args.chunks, 16, scratch, f"{broker}-local", local=True)
            ceiling = s3_ceiling(scratch.s3_endpoint, int(ours["chunks"]))
            print(broker, ours, naive, local, f"S3 ceiling {ceiling:.0f}/s", flush=True)
            rows.append(
                f"| {broker} | {ours['chunks']:.0f} | **{ours['rate']:.0f}** "
                f"({ours['rendered']:.1f} s) | {naive['rate']:.0f} ({naive['rendered']:.1f} s) "
                f"| {ours['rate'] / naive['rate']:.2f} | {ceiling:.0f} | {ours['rate'] / ceiling:.2f} "
                f"| **{local['rate']:.0f}** ({local['rendered']:.1f} s) "
                f"| {ours['finished']:.1f} s | {ours['submit']:.2f} s |"
            )
    report = f"""
## Distributed bookkeeping: chunks/s through API, broker, worker, PostgreSQL, S3 — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()},
  celery {metadata.version("celery")}, PostgreSQL and Redis and RabbitMQ {shutil.which("rabbitmqctl") and "3.10"} on this machine,
  S3 = moto server; commit {git_commit()}
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
