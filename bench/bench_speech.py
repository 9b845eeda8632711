"""Speech latency beside batch work: time to the first audio byte of one-sentence
`POST /v1/audio/speech` requests at several concurrencies while a batch job renders, and
the batch job's throughput with and without that load (Piper, one render worker), with
where the first byte's milliseconds go (the API's Server-Timing header).

    python bench/bench_speech.py [--concurrency 1,4,8] [--chunks 40] [--modes open,closed]
                                 [--batching auto] [--batch-size 8] [--write docs/benchmarks.md]

Everything runs on this machine in separate processes, as a deployment would: the API,
one render worker (`voicebatch worker --queues render`: Celery threads for batch
messages, its speech consumer beside them) and one assemble worker, on the machine's
PostgreSQL, a private Redis (broker, chunk index, speech streams) and a shared folder for
objects. First a few requests with no batch job (the floor), then for each load model
and concurrency a fresh batch job of N distinct sentences is submitted; once its first
chunk is done, that many clients each send one distinct sentence (never a cache hit)
until the job's chunks are all done. Load models: `open`, the realistic one (each client
reads the whole response, then waits as long as its audio lasts, as a voice agent plays
it), and `closed` (back to back: N clients saturate a 2-core engine with speech, so
batch work can only get the lane guard's share). The clock of a request runs from
sending it to its first body byte. Targets (issue 20): p95 <= 400 ms at 4 concurrent
requests; batch throughput down by at most 20 %.
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
_counters: dict[str, itertools.count[int]] = {}


def sentence(tag: str) -> str:
    """A distinct ten-word sentence of a steady length: the tag and a three-digit number
    (spoken, so every one is new audio; one count per tag, so a later run's numbers are
    no longer to speak than an earlier one's)."""
    n = next(_counters.setdefault(tag, itertools.count()))
    return (
        f"The {tag} {WORDS[n % 10]} number {100 + n % 900} was quiet near the "
        f"{WORDS[(n * 7) % 10]}."
    )


def book(chunks: int, tag: str) -> str:
    paragraphs = [sentence(f"{tag} chapter") for _ in range(chunks)]
    return "# Bench\n\n" + "\n\n".join(paragraphs) + "\n"


@dataclass
class Sample:
    """One request: its time to first byte, its audio's duration and the server's stage
    timings (the API's Server-Timing header, ms)."""

    ttfb: float
    audio_seconds: float
    stages: dict[str, float]


def server_timing(header: str) -> dict[str, float]:
    stages = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            stages[name] = float(dur)
    return stages


def speak(client: httpx.Client, text: str) -> Sample:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    started = time.perf_counter()
    seconds = 0.0
    size = 0
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        if response.status_code != 200:
            raise AssertionError(f"{response.status_code}: {response.read()!r}")
        for chunk in response.iter_bytes():
            if chunk and not size:
                seconds = time.perf_counter() - started
            size += len(chunk)
        stages = server_timing(response.headers.get("server-timing", ""))
    stages["client"] = seconds * 1000 - stages.get("total", 0.0)  # HTTP, both ways
    return Sample(seconds, size / 2 / 24_000, stages)  # pcm: 16-bit mono at 24 kHz


FINISHED = ("done", "partially_failed", "failed", "cancelled")


@dataclass
class JobRun:
    chunks: int
    seconds: float  # submit to every chunk done
    rate: float  # chunks/s over the whole job
    loaded_rate: float = 0.0  # chunks/s from the first chunk done (when the load starts)
    samples: list[Sample] = field(default_factory=list)


def client_loop(
    stack: Stack, tag: str, think: bool, stop: threading.Event, out: list[Sample]
) -> None:
    """One client: a distinct sentence, the whole response read, then (open loop) a wait
    as long as the audio it got, as a voice agent plays it before it speaks again."""
    with httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.key}"}, timeout=120
    ) as client:
        while not stop.is_set():
            sample = speak(client, sentence(f"{tag} speech"))
            out.append(sample)  # list.append is atomic
            if think:
                stop.wait(sample.audio_seconds)


def run_job(stack: Stack, chunks: int, tag: str, load: int, *, think: bool = True) -> JobRun:
    """One batch job; `load` clients speaking while its chunks render."""
    samples: list[Sample] = []
    stop = threading.Event()
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
                threads = [
                    threading.Thread(target=client_loop, args=(stack, tag, think, stop, samples))
                    for _ in range(load)
                ]
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
        # the job's assembly (normal priority) finishes before the next run starts, so it
        # never competes with the next job's lowered batch rendering
        while http.get(f"/v1/jobs/{job['id']}").json()["status"] not in FINISHED:
            time.sleep(0.1)
    result = JobRun(total, rendered, total / rendered)
    if load:
        # throughput over the loaded part only (from the first chunk done)
        result.loaded_rate = (total - load_done_at) / (rendered - (load_started - started))
        result.samples = samples
    return result


def idle_samples(stack: Stack, count: int) -> list[Sample]:
    """One client, no batch job: the floor of the time to first byte."""
    with stack.http() as client:
        return [speak(client, sentence("idle speech")) for _ in range(count)]


STAGES = (
    "parse", "publish", "w-queue", "w-pool", "w-plan", "w-lookup", "w-claim", "w-lane",
    "w-engine", "w-store", "stream", "api-wait", "encode", "total", "client",
)  # fmt: skip


def stage_row(label: str, samples: list[Sample], q: float = 50) -> str:
    """Each stage's percentile `q` over the samples (a column each, not one request's)."""
    cells = []
    for stage in STAGES:
        values = [s.stages[stage] for s in samples if stage in s.stages]
        cells.append(f"{np.percentile(values, q):.0f}" if values else "–")
    ttfb = np.percentile([s.ttfb for s in samples], q) * 1000
    return f"| {label} | {len(samples)} | {' | '.join(cells)} | {ttfb:.0f} |"


def ttfb_row(load: int, run: JobRun, baseline: float) -> str:
    ttfb = np.array([s.ttfb for s in run.samples]) * 1000
    drop = 1 - run.loaded_rate / baseline
    per_s = len(ttfb) / max(run.seconds, 1e-9)
    return (
        f"| {load} | {len(ttfb)} | {per_s:.1f} | {np.percentile(ttfb, 50):.0f} | "
        f"**{np.percentile(ttfb, 95):.0f}** | {ttfb.max():.0f} | "
        f"{run.loaded_rate:.2f} | **{drop * 100:.0f} %** |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--batching", default="auto", help="VOICEBATCH_DYNAMIC_BATCHING")
    parser.add_argument("--batch-size", default="8", help="VOICEBATCH_BATCH_SIZE")
    parser.add_argument(
        "--batch-nice",
        default="15",
        help="VOICEBATCH_SPEECH_BATCH_NICE: the nice value of the batch render processes "
        "(stopped while speech renders); 0 = one in-process engine (speech in a batcher of "
        "one's realtime lane)",
    )
    parser.add_argument(
        "--modes",
        default="open",
        help="load models: open (think time = the audio's duration), closed (back to back: "
        "saturating; batch renders are stopped for speech at most half of each 10 s)",
    )
    parser.add_argument("--idle", type=int, default=10, help="requests with no batch job")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    import tempfile

    import redis

    load_average = os.getloadavg()
    broker, index = private_redis_url(14), private_redis_url(15)
    for url in (broker, index):
        redis.Redis.from_url(url).flushdb()
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
            speech_batch_nice=args.batch_nice,
            speech_threads="8",
        )
        upgrade({**{k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}, **env})
        with running_stack(env=env, logs=root, api_port=free_port(), render_concurrency=2) as stack:
            with stack.http() as client:
                speak(client, sentence("warm-up"))  # the engine's first call is slow
            idle = idle_samples(stack, args.idle)
            baseline = run_job(stack, args.chunks, "baseline", 0)
            print("no load", baseline, flush=True)
            runs: list[tuple[str, int, JobRun]] = []
            stages = [stage_row("1 client, no batch job", idle)]
            for mode in args.modes.split(","):
                for load in [int(c) for c in args.concurrency.split(",")]:
                    run = run_job(stack, args.chunks, f"{mode}{load}", load, think=mode == "open")
                    print(mode, load, run.rate, run.loaded_rate, len(run.samples), flush=True)
                    runs.append((mode, load, run))
                    label = f"{mode} loop, {load} client(s), batch job"
                    stages.append(stage_row(label, run.samples))
                    stages.append(stage_row(f"{label}, p95", run.samples, 95))
            after = run_job(stack, args.chunks, "after", 0)
            print("no load, after", after, flush=True)
    # The unloaded rate before and after the loaded runs, averaged: a VM's speed drifts
    unloaded = (baseline.rate + after.rate) / 2
    tables: dict[str, list[str]] = {}
    for mode, load, run in runs:
        tables.setdefault(mode, []).append(ttfb_row(load, run, unloaded))
    header = (
        "| clients | requests | requests/s | TTFB p50 (ms) | TTFB p95 (ms) | max (ms) | "
        "batch chunks/s under load | batch throughput down |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    titles = {
        "open": "**Open loop (the realistic load model)**: each client sends one distinct "
        "sentence, reads the whole response, then waits as long as the audio lasts (a "
        "voice agent playing what it got) before the next.",
        "closed": "**Closed loop (saturating; not a realistic load)**: each client sends the "
        "next sentence as soon as the last response ended, so N clients keep the engine "
        "busy with speech and batch work can only get the lane guard's share.",
    }
    sections = "\n\n".join(
        f"{titles.get(mode, mode)}\n\n{header}\n" + "\n".join(rows) for mode, rows in tables.items()
    )
    stage_header = f"| run | requests | {' | '.join(STAGES)} | TTFB |\n|---|---:|" + "---:|" * (
        len(STAGES) + 1
    )
    stage_table = stage_header + "\n" + "\n".join(stages)
    report = f"""
## Speech beside batch work: time to first audio byte, batch throughput — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; load
  average at the start {load_average[0]:.1f} / {load_average[1]:.1f} / {load_average[2]:.1f}
  and at the end {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} / {os.getloadavg()[2]:.1f}
  (1/5/15 min; above ~2 on 2 cores, other work shared these cores); commit {git_commit()}
- Command: `python bench/bench_speech.py --concurrency {args.concurrency} --chunks
  {args.chunks} --modes {args.modes} --batching {args.batching} --batch-size
  {args.batch_size} --batch-nice {args.batch_nice}`
- Piper (en_US-joe-medium), one render worker (2 Celery threads for batch messages of 4
  chunks, its speech consumer with 8 threads), one assemble worker, the API, PostgreSQL
  and a private Redis, all on these cores; objects in a shared folder.
  VOICEBATCH_DYNAMIC_BATCHING={args.batching}, VOICEBATCH_BATCH_SIZE={args.batch_size},
  VOICEBATCH_SPEECH_BATCH_NICE={args.batch_nice} (above 0: batch chunks render in one child
  process per core at that nice value, stopped while a speech sentence renders in the
  worker's own process; 0: one in-process engine, speech in a batcher of one's lane).
- Batch job: {args.chunks} distinct ten-word sentences, one chunk each. Without speech
  load: **{baseline.rate:.2f} chunks/s** ({baseline.seconds:.1f} s) before the loaded runs,
  {after.rate:.2f} chunks/s after them; "down" compares with their mean,
  {unloaded:.2f} chunks/s.
- Speech: one distinct ten-word sentence per request (`pcm`, never a cache hit), while
  the batch job renders; first byte = first body byte at the client.

{sections}

**Where the first byte's milliseconds go** (medians, and each stage's own 95th
percentile in the "p95" rows, ms; the API's Server-Timing
header): parse (body checked), publish (to the speech queue), w-queue (broker to the
worker's speech consumer), w-pool (to a speech thread), w-plan (normalise, hash),
w-lookup (chunk index, database), w-claim, w-lane (realtime lane wait; without a batcher
it is inside w-engine, on Piper's lock), w-engine (phonemize + VITS), w-store (WAV, object
store, index), stream (XADD to the API's read), api-wait (publish to read: every worker
stage in it), encode (first sentence, before the headers), total (request received to
first byte handed to the server), client (the rest of the client's TTFB: HTTP).

{stage_table}

Targets (issue 20): p95 <= 400 ms at 4 concurrent requests; batch throughput down by at
most 20 %.
"""
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
