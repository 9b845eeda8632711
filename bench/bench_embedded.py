"""Embedded render vs calling Piper directly on the same sentences, in the same run.

    python bench/bench_embedded.py [--source examples/aesop.md] [--rounds 3] [--formats mp3,flac]
                                   [--write docs/benchmarks.md]

Both paths load the voice once, outside the timing. The raw path is the physical floor for
this engine: `PiperVoice.synthesize` on every sentence in a plain loop, audio discarded.
The pipeline path is `voicebatch render` minus the CLI: ingest, segmentation, job state in
SQLite, engine calls, trimming, chunk storage, stitching, loudness, MP3 encoding of the book
and every chapter, manifest. Rounds alternate the two paths so drift hits both equally;
the report gives the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpu_name  # noqa: E402
from pipeline.config import load_settings  # noqa: E402
from pipeline.engines.piper import PiperEngine  # noqa: E402
from pipeline.plan.prepare import check_inputs  # noqa: E402
from pipeline.runner import LocalRuntime, render_file  # noqa: E402
from pipeline.text.segment import split_sentences  # noqa: E402


def raw_loop(voice: object, sentences: list[str]) -> tuple[float, float]:
    """Seconds of wall time and of audio for Piper on each sentence, nothing else."""
    started = time.perf_counter()
    samples = 0
    for sentence in sentences:
        for chunk in voice.synthesize(sentence):  # type: ignore[attr-defined]
            samples += len(chunk.audio_float_array)
    return time.perf_counter() - started, samples / 22050


def pipeline_run(
    engine: PiperEngine, source: Path, fmt: str
) -> tuple[float, float, dict[str, float]]:
    """Seconds of wall time and of finished audio for a full embedded render, fresh state."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(engine="piper", output_format=fmt, data_dir=Path(tmp) / "data")
        runtime = LocalRuntime.open(settings)
        runtime.engine = engine
        checked = check_inputs(source, settings)
        started = time.perf_counter()
        outcome = render_file(runtime, checked, output_dir=Path(tmp) / "out")
        wall = time.perf_counter() - started
        assert outcome.assembly is not None
        timings = dict(outcome.seconds)
        timings["engine"] = outcome.stats.engine_seconds
        return wall, outcome.assembly.duration, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--source", type=Path, default=ROOT / "examples" / "aesop.md")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", default="mp3,flac", help="comma-separated output formats")
    parser.add_argument("--write", type=Path, help="append the report to this Markdown file")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    document = check_inputs(args.source, load_settings(engine="piper")).document
    # The same texts the pipeline speaks: each chapter's heading (read aloud by default), then
    # its paragraphs.
    spoken = [
        p
        for ch in document.chapters
        for p in ([ch.title] if ch.heading else []) + list(ch.paragraphs)
    ]
    sentences = [s for p in spoken for s in split_sentences(p)]
    engine = PiperEngine()  # one loaded voice serves both paths
    voice = engine._voices[engine.default_voice]
    raw_loop(voice, sentences[:2])  # warm onnxruntime up

    raw_times: list[float] = []
    ours: dict[str, list[tuple[float, float, dict[str, float]]]] = {f: [] for f in formats}
    audio_raw = 0.0
    for round_ in range(args.rounds):
        paths = ["raw", *formats] if round_ % 2 == 0 else [*formats, "raw"]
        for which in paths:
            if which == "raw":
                seconds, audio_raw = raw_loop(voice, sentences)
                raw_times.append(seconds)
            else:
                ours[which].append(pipeline_run(engine, args.source, which))
        line = ", ".join(f"{f} {ours[f][-1][0]:.2f} s" for f in formats)
        print(f"round {round_ + 1}: raw {raw_times[-1]:.2f} s, {line}", flush=True)

    raw = statistics.median(raw_times)
    rows, notes = [], []
    for fmt in formats:
        wall = statistics.median(r[0] for r in ours[fmt])
        audio = ours[fmt][0][1]
        part = {k: statistics.median(r[2][k] for r in ours[fmt]) for k in ours[fmt][0][2]}
        # The pipeline's own time against the engine time of the same run: steadier than the
        # wall-time ratio when the machine's speed drifts between rounds.
        own = statistics.median((r[0] - r[2]["engine"]) / r[2]["engine"] for r in ours[fmt])
        rows.append(
            f"| voicebatch embedded render, {fmt} (book + chapters) | {wall:.2f} s | {audio:.1f} s "
            f"| {audio / wall:.1f}x | **{wall / raw:.3f}** ({wall / raw - 1:+.1%}) | **{own:+.1%}** |"
        )
        notes.append(
            f"- {fmt}: engine {part['engine']:.2f} s, planning {part['plan']:.3f} s, render loop "
            f"outside the engine {part['render'] - part['engine']:.3f} s, assembly (stitch, "
            f"loudness, encode, write) {part['assemble']:.3f} s"
        )
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    source = args.source.relative_to(ROOT) if args.source.is_relative_to(ROOT) else args.source
    report = f"""
## Embedded render vs raw Piper loop — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()},
  piper-tts {metadata.version("piper-tts")}, onnxruntime {metadata.version("onnxruntime")}, commit {git.stdout.strip() or "?"}
- Command: `make bench` (`python bench/bench_embedded.py --rounds {args.rounds} --formats {",".join(formats)}`)
- Input: `{source}`, {len(sentences)} sentences, {document.word_count} words;
  medians of {args.rounds} rounds, the paths alternating in order

| path | wall time | audio | speed (x real time) | ratio to raw | overhead over its own engine time |
|---|---:|---:|---:|---:|---:|
| raw: `PiperVoice.synthesize` per sentence, plain loop | {raw:.2f} s | {audio_raw:.1f} s | {audio_raw / raw:.1f}x | 1.000 | |
{chr(10).join(rows)}

Where the pipeline's time goes (medians):
{chr(10).join(notes)}

Audio lengths differ because the pipeline trims each chunk's silence and adds pauses; the
ratio compares wall time for speaking the same sentences.
"""
    print(report)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        if not args.write.exists():
            args.write.write_text(
                "# Benchmarks\n\nEach section is one run of a benchmark in `bench/`, newest last.\n"
            )
        with args.write.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
