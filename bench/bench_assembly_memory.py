"""Assembly memory and time for a long book: streaming assembly vs the naive whole-array path.

    python bench/bench_assembly_memory.py [--minutes 60] [--format mp3] [--write docs/benchmarks.md]

A book of about `--minutes` of audio is rendered once with the deterministic test engine
(chunk objects in a local store). Then, each in a fresh subprocess so peak memory is its
own:
- ours: `assemble_job` (streaming mastering, two encoder threads, spooled outputs);
- naive: every chunk loaded and concatenated into one array with the same pauses,
  `pyloudnorm` normalisation to -18 LUFS, one encode of the book.
The naive path writes only the book file; ours also writes every chapter file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARAGRAPH = (
    "This sentence is here to make a long book for measuring memory, and it goes on a while. " * 3
)


def build(data: Path, minutes: float, fmt: str) -> tuple[str, float]:
    from pipeline.config import load_settings
    from pipeline.plan.prepare import check_inputs
    from pipeline.runner import LocalRuntime, render_file

    per_paragraph_seconds = 19.0  # the test engine's pace for PARAGRAPH, measured
    paragraphs = max(1, round(minutes * 60 / per_paragraph_seconds))
    chapters = max(1, paragraphs // 60)
    body = "\n\n".join(
        f"## Chapter {c + 1}\n\n" + "\n\n".join([PARAGRAPH] * (paragraphs // chapters))
        for c in range(chapters)
    )
    book = data / "long.md"
    book.write_text(f"# Long\n\n{body}\n")
    settings = load_settings(engine="test-tone", data_dir=data / "state", output_format=fmt)
    outcome = render_file(
        LocalRuntime.open(settings), check_inputs(book, settings), output_dir=data / "first"
    )
    assert outcome.assembly is not None
    return str(outcome.job.job_id), outcome.assembly.duration


def child(mode: str, data: Path, job: str, fmt: str) -> None:
    import uuid

    from pipeline.assemble.embedded import assemble_job
    from pipeline.config import load_settings
    from pipeline.runner import LocalRuntime
    from pipeline.storage.local import LocalObjectStore

    settings = load_settings(engine="test-tone", data_dir=data / "state", output_format=fmt)
    runtime = LocalRuntime.open(settings)
    started = time.perf_counter()
    if mode == "ours":
        assemble_job(
            runtime.factory,
            job_id=uuid.UUID(job),
            chunk_store=runtime.chunk_store,
            output_store=LocalObjectStore(data / f"out-{mode}"),
        )
    else:
        import numpy as np
        import pyloudnorm

        from pipeline.audio.encode import encode
        from pipeline.audio.process import from_wav_bytes
        from pipeline.state import store
        from pipeline.state.db import transaction

        pieces = []
        with transaction(runtime.factory) as session:
            for index, item in enumerate(store.job_items(session, job_id=uuid.UUID(job))):
                if index:
                    pieces.append(np.zeros(2 * 22050, np.float32))
                for position, chunk in enumerate(store.item_chunks(session, item_id=item.id)):
                    if position:
                        pieces.append(
                            np.zeros(
                                int(22050 * (0.8 if chunk.paragraph_start else 0.3)), np.float32
                            )
                        )
                    assert chunk.object_key is not None
                    pieces.append(from_wav_bytes(runtime.chunk_store.get(chunk.object_key))[0])
        book = np.concatenate(pieces)
        loudness = pyloudnorm.Meter(22050).integrated_loudness(book.astype(np.float64))
        normalised = pyloudnorm.normalize.loudness(book.astype(np.float64), loudness, -18.0)
        (data / f"out-{mode}.{fmt}").write_bytes(encode(normalised.astype(np.float32), 22050, fmt))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--format", default="mp3")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--child", choices=["ours", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.job, args.format)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        job, duration = build(data, args.minutes, args.format)
        book_mb = duration * 22050 * 4 / 2**20
        results = {}
        for mode in ("ours", "naive"):
            run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--data",
                    str(data),
                    "--job",
                    job,
                    "--format",
                    args.format,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
            print(mode, results[mode], flush=True)
    ours, naive = results["ours"], results["naive"]
    report = f"""
## Assembly memory: streaming vs whole-array — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}
- Command: `make bench` (`python bench/bench_assembly_memory.py --minutes {args.minutes:g} --format {args.format}`)
- Book: {duration / 60:.1f} min of audio at 22.05 kHz (test engine); as one float32 array it is {book_mb:.0f} MB

| path | peak RSS | ratio to the book's float32 size | wall time | files written |
|---|---:|---:|---:|---|
| voicebatch streaming assembly | {ours["peak_mb"]:.0f} MB | {ours["peak_mb"] / book_mb:.2f}x | {ours["seconds"]:.1f} s | book + every chapter |
| naive: concatenate, pyloudnorm, encode | {naive["peak_mb"]:.0f} MB | {naive["peak_mb"] / book_mb:.2f}x | {naive["seconds"]:.1f} s | book only |
| **ours / naive** | **{ours["peak_mb"] / naive["peak_mb"]:.3f}** | | **{ours["seconds"] / naive["seconds"]:.2f}** | |

Peak RSS includes the interpreter and libraries (about 150 MB before any audio).
"""
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
