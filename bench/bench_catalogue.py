"""Catalogue scaling: chunks per second through the distributed stack for catalogues of
1,000, 10,000 and 100,000 items, and the API's peak memory while it takes the submit.

    python bench/bench_catalogue.py [--items 1000,10000,100000] [--storage s3|local]
                                    [--write docs/benchmarks.md]

Every process runs on this machine as a deployment would: the API (`voicebatch api`), a
render worker (threads) and an assemble worker (`voicebatch worker`), real Celery on a
private redis-server, PostgreSQL, and an S3 server (moto; `--storage local`: a folder
every process shares, as moto holds every object in its memory), with the test engine. Each
catalogue is one JSON submit of one-sentence items (one chunk each) to a fresh
deployment. The clock runs from the submit's response (the job planned and its messages
published) until the database records every chunk final; a message's cost must not
grow with the catalogue, so the rates should stay within 20% of each other. The API's
peak resident memory (VmHWM) is read before and after the submit.

Completion is watched with one index probe of the database (is any chunk of the job not
final?), not with the API's job view, whose counts read every chunk of the job: polled
each second, that would cost the 100k run more than the 1k one and slow what it measures.
The CPU seconds each process spent per chunk while rendering are reported beside the
rate, so a slowdown shows where it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from bench import cpu_name  # noqa: E402
from bench.deployment import (  # noqa: E402
    Scratch,
    cpu_seconds,
    deployment_env,
    free_port,
    fresh_database,
    git_commit,
    peak_rss_mib,
    s3_and_scratch,
    s3_client,
    upgrade,
)
from tests.support.services import private_redis_url  # noqa: E402
from tests.support.stack import running_stack  # noqa: E402

THREADS = 4
TASK_CHUNKS = 16
PROCESSES = ("api", "worker-render", "worker-assemble")
# One index probe (ix_chunks_job_id_status): its cost does not grow with the catalogue.
OPEN_CHUNK = text(
    "SELECT 1 FROM chunks WHERE job_id = :job AND status IN ('pending', 'leased') LIMIT 1"
)


def catalogue(items: int) -> bytes:
    """A JSON submit of `items` distinct one-sentence entries."""
    rows = [{"id": f"sku-{n}", "text": f"Item {n}."} for n in range(items)]
    return json.dumps({"title": f"Catalogue {items}", "items": rows, "format": "flac"}).encode()


def run_catalogue(items: int, scratch: Scratch, db: int, *, local: bool) -> dict[str, float]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3_client(scratch.s3_endpoint).create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    logs = scratch.folder / str(items)
    logs.mkdir(parents=True, exist_ok=True)
    with fresh_database() as database_url:
        env = deployment_env(
            database_url=database_url,
            broker_url=private_redis_url(db),
            redis_url=private_redis_url(db + 1),
            # local: a folder every process shares instead of S3 (moto holds every
            # object in its own memory, about 10 GB at 100,000 items)
            storage_url=str(logs / "objects") if local else f"s3://{bucket}/bench",
            s3_endpoint=scratch.s3_endpoint,
            data_dir=logs / "data",
            task_chunks=TASK_CHUNKS,
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
        upgrade({**base, **env})
        body = catalogue(items)
        probe = create_engine(database_url)
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
            pids = {name: stack.processes[name].pid for name in PROCESSES}
            pids["s3"] = scratch.s3_pid
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            job = created.json()
            total = job["chunks"]["total"]
            with probe.connect() as conn:
                while conn.execute(OPEN_CHUNK, {"job": job["id"]}).first() is not None:
                    conn.rollback()
                    time.sleep(0.2)
            rendered = time.perf_counter()
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            info = http.get(f"/v1/jobs/{job['id']}").json()
            assert info["chunks"]["done"] == total, info
        probe.dispose()
    return {
        "items": items,
        "chunks": total,
        "submit": submitted - started,
        "render": rendered - submitted,
        "rate": total / (rendered - submitted),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "body_mib": len(body) / 2**20,
        **{f"cpu_ms_{name}": 1000 * seconds / total for name, seconds in cpu.items()},
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1000,10000,100000")
    parser.add_argument("--storage", choices=("s3", "local"), default="s3")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    local = args.storage == "local"
    results = []
    with s3_and_scratch() as scratch:
        for index, items in enumerate(int(n) for n in args.items.split(",")):
            result = run_catalogue(items, scratch, 2 * index, local=local)
            print(result, flush=True)
            results.append(result)
    rates = [r["rate"] for r in results]
    spread = max(rates) / min(rates) - 1 if rates else 0.0
    rows = "\n".join(
        f"| {r['items']:,.0f} | **{r['rate']:.0f}** ({r['render']:.1f} s) "
        f"| {r['submit']:.1f} s | {r['body_mib']:.1f} MiB | {r['rss_before']:.0f} -> "
        f"**{r['rss_after']:.0f} MiB** | {r['cpu_ms_worker-render']:.1f} "
        f"| {r['cpu_ms_worker-assemble']:.1f} | {r['cpu_ms_s3']:.1f} | {r['cpu_ms_api']:.1f} "
        f"| {r['load']:.1f} |"
        for r in results
    )
    report = f"""
## Catalogue scaling: chunks/s at 1k, 10k, 100k items — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()},
  celery {metadata.version("celery")}, PostgreSQL on this machine, a private redis-server
  as broker and chunk index, {"a local folder every process shares" if local else "S3 = moto server"}; commit {git_commit()}
- Command: `python bench/bench_catalogue.py --items {args.items} --storage {args.storage}`
- One JSON submit of one-sentence items (test engine, one chunk each); one render worker
  with {THREADS} threads, {TASK_CHUNKS} chunks a message, and one assemble worker, every
  process on these cores. Rate: chunks from the submit's response until all are final.
  Target: rates within 20% of each other (here: {spread:.0%} between the fastest and the
  slowest). CPU: milliseconds per chunk each process spent while the chunks rendered.

| items (one chunk each) | chunks/s (render time) | submit request | request body | API peak RSS, before -> after the submit | CPU ms/chunk: render worker | assemble worker | S3 (moto) | API | load average at the end |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}
"""
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
