"""`voicebatch render` as a user runs it, against the plain Piper loop, whole processes.

    python bench/bench_render_process.py [--chapters 3,12,45] [--pairs 3]
                                         [--write docs/benchmarks.md]

For each book (bench/books.py: every sentence different, so nothing comes from the
cache), each pair runs:

- `voicebatch render BOOK -o OUT` on a fresh data folder, default options (mp3, chapter
  files, timing files), with `--stage-times` for the per-stage breakdown;
- `python bench/piper_loop.py OUT/manifest.json`: load the same voice and speak exactly
  the chunk texts that render's manifest lists, in a plain loop.

Both are timed as whole processes (wall, CPU, peak RSS from wait4). Pairs alternate which
runs first; the report gives the median ratio and its range. Start-up is the time from
launching `voicebatch render` to the moment it starts loading the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpu_name  # noqa: E402
from bench.books import book_text  # noqa: E402

VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")
TARGETS = {3: 1.25, 45: 1.10}  # chapters -> the ratio target
STARTUP_TARGET = 0.4


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    started: float  # epoch seconds at launch
    stdout: str


def timed(command: list[str], env: dict[str, str]) -> Run:
    started_epoch = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    out = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{out}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, started_epoch, out)


def render_once(book: Path, work: Path) -> tuple[Run, dict[str, object], Path]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = dict(os.environ, VOICEBATCH_DATA_DIR=str(work / "data"))
    for name in [k for k in env if k.startswith("VOICEBATCH_") and k != "VOICEBATCH_DATA_DIR"]:
        del env[name]  # default options, as a user on a fresh machine has them
    times = work / "stages.json"
    run = timed(
        [
            VOICEBATCH,
            "render",
            str(book),
            "-o",
            str(work / "out"),
            "-q",
            "--stage-times",
            str(times),
        ],
        env,
    )
    return run, json.loads(times.read_text()), work / "out" / "manifest.json"


def loop_once(manifest: Path) -> Run:
    return timed(
        [sys.executable, str(ROOT / "bench" / "piper_loop.py"), str(manifest)], dict(os.environ)
    )


def measure(chapters: int, pairs: int, folder: Path) -> dict[str, object]:
    book = folder / f"book-{chapters}.md"
    book.write_text(book_text(chapters), encoding="utf-8")
    renders: list[tuple[Run, dict[str, object]]] = []
    loops: list[Run] = []
    for pair in range(pairs):
        work = folder / f"render-{chapters}"
        if pair % 2 == 0:
            run, stages, manifest = render_once(book, work)
            loop = loop_once(manifest)
        else:
            # the loop needs a manifest: the previous pair's lists the same chunk texts
            loop = loop_once(folder / f"manifest-{chapters}.json")
            run, stages, manifest = render_once(book, work)
        shutil.copy(manifest, folder / f"manifest-{chapters}.json")
        renders.append((run, stages))
        loops.append(loop)
        print(
            f"{chapters} chapters, pair {pair + 1}: render {run.wall:.2f} s, loop {loop.wall:.2f} s, "
            f"ratio {run.wall / loop.wall:.3f}",
            flush=True,
        )
    manifest_data = json.loads((folder / f"manifest-{chapters}.json").read_text())
    ratios = [r.wall / loop.wall for (r, _), loop in zip(renders, loops, strict=True)]
    startups = [
        s["marks"]["engine_load_start"] - r.started  # type: ignore[index]
        for r, s in renders
    ]
    stage_names = sorted({name for _, s in renders for name in s["stages"]})  # type: ignore[attr-defined]

    def median_stage(name: str, key: str) -> float:
        return statistics.median(
            s["stages"].get(name, {}).get(key, 0.0)  # type: ignore[attr-defined]
            for _, s in renders
        )

    return {
        "chapters": chapters,
        "audio": float(manifest_data["duration"]),
        "chunks": sum(len(c["chunks"]) for c in manifest_data["chapters"]),
        "render": statistics.median(r.wall for r, _ in renders),
        "render_cpu": statistics.median(r.cpu for r, _ in renders),
        "render_rss": max(r.rss_mb for r, _ in renders),
        "loop": statistics.median(loop.wall for loop in loops),
        "loop_cpu": statistics.median(loop.cpu for loop in loops),
        "loop_rss": max(loop.rss_mb for loop in loops),
        "ratio": statistics.median(ratios),
        "ratio_range": (min(ratios), max(ratios)),
        "startup": statistics.median(startups),
        "stages": {n: (median_stage(n, "wall"), median_stage(n, "cpu")) for n in stage_names},
    }


def report(results: list[dict[str, object]], pairs: int, chapters: str) -> str:
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    rows = []
    for r in results:
        target = TARGETS.get(int(r["chapters"]))  # type: ignore[arg-type]
        verdict = "" if target is None else (" met" if r["ratio"] <= target else " **missed**")  # type: ignore[operator]
        low, high = r["ratio_range"]  # type: ignore[misc]
        rows.append(
            f"| {r['chapters']} chapters, {r['audio'] / 60:.1f} min, {r['chunks']} chunks "
            f"| {r['render']:.2f} s | {r['loop']:.2f} s | **{r['ratio']:.3f}** ({low:.3f}–{high:.3f})"
            f"{'' if target is None else f' (target ≤ {target:.2f}:{verdict})'} "
            f"| {r['render_cpu']:.1f} s / {r['loop_cpu']:.1f} s "
            f"| {r['render_rss']:.0f} MB / {r['loop_rss']:.0f} MB | {r['startup']:.2f} s |"
        )
    names = sorted({n for r in results for n in r["stages"]})  # type: ignore[attr-defined]
    header = " | ".join(f"{r['chapters']} ch wall / CPU" for r in results)
    stage_rows = []
    for name in names:
        cells = " | ".join(
            "{:.2f} / {:.2f}".format(*r["stages"].get(name, (0.0, 0.0)))  # type: ignore[attr-defined]
            for r in results
        )
        stage_rows.append(f"| `{name}` | {cells} |")
    return f"""
## `voicebatch render` vs the plain Piper loop, whole processes — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC

- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()},
  piper-tts {metadata.version("piper-tts")}, onnxruntime {metadata.version("onnxruntime")}, commit {git or "?"}
- Command: `python bench/bench_render_process.py --chapters {chapters} --pairs {pairs}`
- Books from `bench/books.py` (every sentence different: nothing from the cache); default
  options (mp3, chapter files, srt/vtt/json timing files); a fresh data folder per render.
  The loop (`bench/piper_loop.py`) loads the same voice and speaks the chunk texts of that
  render's manifest. Medians of {pairs} alternating pairs; the ratio's range in brackets.

| book | render | loop | ratio | CPU render / loop | peak RSS render / loop | start-up |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Start-up: from launching `voicebatch render` to the start of engine loading (target ≤ {STARTUP_TARGET} s).
Where the render's time goes (`--stage-times`; seconds summed over threads, medians;
`engine` is time inside engine calls, `state` time inside database transactions):

| stage | {header} |
|---|{"---:|" * len(results)}
{chr(10).join(stage_rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", default="3,12,45", help="comma-separated book sizes")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--write", type=Path, help="append the report to this Markdown file")
    args = parser.parse_args()
    sizes = [int(c) for c in args.chapters.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="vb-bench-") as tmp:
        results = [measure(chapters, args.pairs, Path(tmp)) for chapters in sizes]
    text = report(results, args.pairs, args.chapters)
    print(text)
    if args.write:
        with args.write.open("a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
