"""Catalogue scaling: chunks per second through the distributed stack for catalogues of
1,000, 10,000 and 100,000 items, and the API's peak memory while it takes the submit.

    python bench/bench_catalogue.py [--items 1000,10000,100000] [--write docs/benchmarks.md]

Every process runs on this machine as a deployment would: the API (`voicebatch api`), a
render worker (threads) and an assemble worker (`voicebatch worker`), real Celery on a
private redis-server, PostgreSQL, and an S3 server (moto), with the test engine. Each
catalogue is one JSON submit of one-sentence items (one chunk each) to a fresh
deployment. The clock runs from the submit's response (the job planned and its messages
published) until the database records every chunk final; a message's cost must not
grow with the catalogue, so the rates should stay within 20% of each other. The API's
peak resident memory (VmHWM) is read before and after the submit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpu_name  # noqa: E402
from bench.deployment import (  # noqa: E402
    free_port,
    fresh_database,
    peak_rss_mib,
    s3_client,
    start_s3,
    upgrade,
)
from tests.support.services import private_redis_url  # noqa: E402
from tests.support.stack import running_stack  # noqa: E402

THREADS = 4
TASK_CHUNKS = 16


def catalogue(items: int) -> bytes:
    """A JSON submit of `items` distinct one-sentence entries."""
    rows = [{"id": f"sku-{n}", "text": f"Item {n}."} for n in range(items)]
    return json.dumps({"title": f"Catalogue {items}", "items": rows, "format": "flac"}).encode()


def run_catalogue(items: int, s3_endpoint: str, logs: Path, db: int) -> dict[str, float]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    logs.mkdir(parents=True, exist_ok=True)
    with fresh_database() as database_url:
        env = {
            "VOICEBATCH_DATABASE_URL": database_url,
            "VOICEBATCH_BROKER_URL": private_redis_url(db),
            "VOICEBATCH_REDIS_URL": private_redis_url(db + 1),
            "VOICEBATCH_STORAGE_URL": f"s3://{bucket}/bench",
            "VOICEBATCH_S3_ENDPOINT_URL": s3_endpoint,
            "VOICEBATCH_S3_ACCESS_KEY_ID": "bench",
            "VOICEBATCH_S3_SECRET_ACCESS_KEY": "bench",
            "VOICEBATCH_ENGINE": "test-tone",
            "VOICEBATCH_READ_TITLES": "false",
            "VOICEBATCH_TASK_CHUNKS": str(TASK_CHUNKS),
            "VOICEBATCH_DATA_DIR": str(logs / "data"),
            "VOICEBATCH_API_RATE_LIMIT": "100000",
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
        upgrade({**base, **env})
        body = catalogue(items)
        with (
            running_stack(
                env=env, logs=logs, api_port=free_port(), render_concurrency=THREADS
            ) as stack,
            stack.http() as http,
        ):
            api_pid = stack.processes["api"].pid
            rss_before = peak_rss_mib(api_pid)
            http.timeout = 600
            started = time.perf_counter()
            created = http.post(
                "/v1/jobs", content=body, headers={"Content-Type": "application/json"}
            )
            assert created.status_code == 201, created.text[:500]
            submitted = time.perf_counter()
            rss_after = peak_rss_mib(api_pid)
            job = created.json()
            total = job["chunks"]["total"]
            poll = 0.2 if items <= 10_000 else 1.0
            while True:
                info = http.get(f"/v1/jobs/{job['id']}").json()
                if info["chunks"]["done"] + info["chunks"]["failed"] == total:
                    break
                if info["status"] in ("failed", "partially_failed", "cancelled"):
                    raise AssertionError(info)
                time.sleep(poll)
            rendered = time.perf_counter()
            assert info["chunks"]["failed"] == 0, info
    return {
        "items": items,
        "chunks": total,
        "submit": submitted - started,
        "render": rendered - submitted,
        "rate": total / (rendered - submitted),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "body_mib": len(body) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1000,10000,100000")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    port = free_port()
    server = start_s3(port)
    endpoint = f"http://127.0.0.1:{port}"
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="voicebatch-bench-") as folder:
            for index, items in enumerate(int(n) for n in args.items.split(",")):
                result = run_catalogue(items, endpoint, Path(folder) / str(items), 2 * index)
                print(result, flush=True)
                results.append(result)
    finally:
        server.terminate()
        server.wait()
    rates = [r["rate"] for r in results]
    spread = max(rates) / min(rates) - 1 if rates else 0.0
    rows = "\n".join(
        f"| {r['items']:,.0f} | {r['chunks']:,.0f} | **{r['rate']:.0f}** ({r['render']:.1f} s) "
        f"| {r['submit']:.1f} s | {r['body_mib']:.1f} MiB | {r['rss_before']:.0f} -> "
        f"**{r['rss_after']:.0f} MiB** |"
        for r in results
    )
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    report = f"""
## Catalogue scaling: chunks/s at 1k, 10k, 100k items — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()},
  celery {metadata.version("celery")}, PostgreSQL on this machine, a private redis-server
  as broker and chunk index, S3 = moto server; commit {git.stdout.strip() or "?"}
- Command: `make bench` (`python bench/bench_catalogue.py --items {args.items}`)
- One JSON submit of one-sentence items (test engine, one chunk each); one render worker
  with {THREADS} threads, {TASK_CHUNKS} chunks a message, and one assemble worker, every
  process on these cores. Rate: chunks from the submit's response until all are final.
  Target: rates within 20% of each other (here: {spread:.0%} between the fastest and the
  slowest).

| items | chunks | chunks/s (render time) | submit request | request body | API peak RSS, before -> after the submit |
|---:|---:|---:|---:|---:|---:|
{rows}
"""
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
