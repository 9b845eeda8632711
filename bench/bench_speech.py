"""Speech latency beside batch work: time to the first audio byte of one-sentence
`POST /v1/audio/speech` requests at several concurrencies while a batch job renders, and
the batch job's throughput with and without that load (Piper, one render worker).

    python bench/bench_speech.py [--concurrency 1,4,8] [--chunks 40]
                                 [--batching on] [--batch-size 1] [--write docs/benchmarks.md]

Everything runs on this machine in separate processes, as a deployment would: the API,
one render worker (`voicebatch worker --queues render`: Celery threads for batch
messages, its speech consumer beside them) and one assemble worker, on the machine's
PostgreSQL, a private Redis (broker, chunk index, speech streams) and a shared folder for
objects. For each concurrency, a fresh batch job of N distinct sentences is submitted;
once its first chunk is done, that many clients each send one distinct sentence after
another (never a cache hit) until the job's chunks are all done. The clock of a request
runs from sending it to its first body byte. Targets (issue 20): p95 <= 400 ms at 4
concurrent requests; batch throughput down by at most 20 %.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench import cpu_name  # noqa: E402
from bench.deployment import (  # noqa: E402
    deployment_env,
    free_port,
    fresh_database,
    git_commit,
    upgrade,
)
from tests.support.services import private_redis_url  # noqa: E402
from tests.support.stack import Stack, running_stack  # noqa: E402

WORDS = [
    "harbour",
    "lantern",
    "meadow",
    "orchard",
    "river",
    "valley",
    "window",
    "garden",
    "morning",
    "evening",
]
_counter = itertools.count()


def sentence(tag: str) -> str:
    """A distinct ten-word sentence (numbers are spoken, so every one is new audio)."""
    n = next(_counter)
    return f"The {tag} {WORDS[n % 10]} number {n} was quiet near the {WORDS[(n * 7) % 10]}."


def book(chunks: int, tag: str) -> str:
    paragraphs = [sentence(f"{tag} chapter") for _ in range(chunks)]
    return "# Bench\n\n" + "\n\n".join(paragraphs) + "\n"


def first_byte(client: httpx.Client, text: str) -> float:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    started = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        if response.status_code != 200:
            raise AssertionError(f"{response.status_code}: {response.read()!r}")
        chunks = response.iter_bytes()
        for chunk in chunks:
            if chunk:
                seconds = time.perf_counter() - started
                break
        for _ in chunks:
            pass
    return seconds


@dataclass
class JobRun:
    chunks: int
    seconds: float  # submit to every chunk done
    rate: float  # chunks/s over the whole job
    loaded_rate: float = 0.0  # chunks/s from the first chunk done (when the load starts)
    samples: list[float] = field(default_factory=list)  # seconds to the first byte


def run_job(stack: Stack, chunks: int, tag: str, load: int) -> JobRun:
    """One batch job; `load` clients speaking while its chunks render."""
    samples: list[float] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.key}"}, timeout=120
        ) as client:
            while not stop.is_set():
                seconds = first_byte(client, sentence(f"{tag} speech"))
                with lock:
                    samples.append(seconds)

    with stack.http() as http:
        started = time.perf_counter()
        created = http.post("/v1/jobs", files={"file": ("bench.md", book(chunks, tag).encode())})
        assert created.status_code == 201, created.text
        job = created.json()
        total = job["chunks"]["total"]
        threads: list[threading.Thread] = []
        while True:
            info = http.get(f"/v1/jobs/{job['id']}").json()
            done = info["chunks"]["done"] + info["chunks"]["failed"]
            if load and not threads and done >= 1:
                threads = [threading.Thread(target=client_loop) for _ in range(load)]
                for thread in threads:
                    thread.start()
                load_started = time.perf_counter()
                load_done_at = done
            if done == total:
                break
            time.sleep(0.1)
        rendered = time.perf_counter() - started
        stop.set()
        for thread in threads:
            thread.join()
    result = JobRun(total, rendered, total / rendered)
    if load:
        # throughput over the loaded part only (from the first chunk done)
        result.loaded_rate = (total - load_done_at) / (rendered - (load_started - started))
        result.samples = samples
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--batching", default="on", help="VOICEBATCH_DYNAMIC_BATCHING")
    parser.add_argument(
        "--batch-size",
        default="1",
        help="VOICEBATCH_BATCH_SIZE: Piper renders one request at a time, so a batch of one "
        "lets a speech sentence in after every batch chunk",
    )
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    import tempfile

    import redis

    load_average = os.getloadavg()
    broker, index = private_redis_url(14), private_redis_url(15)
    for url in (broker, index):
        redis.Redis.from_url(url).flushdb()
    rows = []
    with tempfile.TemporaryDirectory(prefix="voicebatch-bench-") as folder, fresh_database() as db:
        root = Path(folder)
        env = deployment_env(
            database_url=db,
            broker_url=broker,
            redis_url=index,
            storage_url=str(root / "objects"),
            s3_endpoint="http://127.0.0.1:1",  # unused: objects in a shared folder
            data_dir=root / "data",
            task_chunks=4,
            engine="piper",
            chunk_max_chars="120",
            dynamic_batching=args.batching,
            batch_size=args.batch_size,
            speech_threads="8",
        )
        upgrade({**{k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}, **env})
        with running_stack(env=env, logs=root, api_port=free_port(), render_concurrency=2) as stack:
            first_byte(stack.http(), sentence("warm-up"))  # the engine's first call is slow
            baseline = run_job(stack, args.chunks, "baseline", 0)
            print("no load", baseline, flush=True)
            for load in [int(c) for c in args.concurrency.split(",")]:
                loaded = run_job(stack, args.chunks, f"load{load}", load)
                ttfb = np.array(loaded.samples) * 1000
                print(load, loaded.rate, loaded.loaded_rate, f"n={len(ttfb)}", flush=True)
                drop = 1 - loaded.loaded_rate / baseline.rate
                rows.append(
                    f"| {load} | {len(ttfb)} | {np.percentile(ttfb, 50):.0f} | "
                    f"**{np.percentile(ttfb, 95):.0f}** | {ttfb.max():.0f} | "
                    f"{loaded.loaded_rate:.2f} | **{drop * 100:.0f} %** |"
                )
    report = f"""
## Speech beside batch work: time to first audio byte, batch throughput — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; load
  average at the start {load_average[0]:.1f} / {load_average[1]:.1f} / {load_average[2]:.1f}
  (1/5/15 min: other work shared these cores); commit {git_commit()}
- Command: `make bench` (`python bench/bench_speech.py --concurrency {args.concurrency}
  --chunks {args.chunks} --batching {args.batching} --batch-size {args.batch_size}`)
- Piper (en_US-joe-medium), one render worker (2 Celery threads for batch messages of 4
  chunks, its speech consumer with 8 threads), one assemble worker, the API, PostgreSQL
  and a private Redis, all on these cores; objects in a shared folder.
  VOICEBATCH_DYNAMIC_BATCHING={args.batching}, VOICEBATCH_BATCH_SIZE={args.batch_size}.
- Batch job: {args.chunks} distinct ten-word sentences, one chunk each. Without speech
  load: **{baseline.rate:.2f} chunks/s** ({baseline.seconds:.1f} s).
- Speech: one distinct ten-word sentence per request (`pcm`), each client sending the
  next as soon as the last one ended, while the batch job renders; first byte = first
  body byte at the client.

| concurrent requests | requests | TTFB p50 (ms) | TTFB p95 (ms) | max (ms) | batch chunks/s under load | batch throughput down |
|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Targets: p95 <= 400 ms at 4 concurrent requests; batch throughput down by at most 20 %.
"""
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
