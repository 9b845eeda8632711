"""QA of a whole output folder: every chapter or item file its manifest lists, checked
chunk by chunk; the verdicts written to qa.json, a summary into the manifest, and the
word times into the timing files.

Works on any folder with a manifest (one just rendered, or one downloaded from a server):
it reads nothing but the folder."""

from __future__ import annotations

import functools
import gc
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.assemble import keys
from pipeline.assemble.manifest import is_catalogue, read_manifest, write_manifest
from pipeline.audio.subtitles import to_word_vtt
from pipeline.errors import InputError, NotFoundError
from pipeline.qa.asr import SAMPLE_RATE, Recogniser, decode
from pipeline.qa.check import FLAGS, ChunkCheck, Span
from pipeline.qa.twostage import StageStats, TwoStageChecker
from pipeline.storage.base import ObjectStore

QA_KEY = keys.QA_KEY


@dataclass(frozen=True)
class Target:
    """One file to check: its key, its chunks placed in it, and where its chunks sit in
    the timing files (`offset`: the file's start in the book's timeline)."""

    file: str
    title: str
    spans: list[Span]
    timings: str | None  # the file's own timing JSON
    offset: float = 0.0
    chapter: int | None = None


@dataclass
class FileResult:
    target: Target
    checks: list[ChunkCheck]
    audio_seconds: float


@dataclass
class QaReport:
    """Every file's verdicts, and the time the checking took."""

    model: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    stages: StageStats | None = None  # what each stage cost (a run of `run_qa`)

    @property
    def flagged(self) -> list[tuple[FileResult, ChunkCheck]]:
        return [(f, c) for f in self.files for c in f.checks if c.flags]

    def summary(self) -> dict[str, Any]:
        checks = [c for f in self.files for c in f.checks]
        tokens = sum(c.tokens for c in checks)
        counts = {flag: sum(flag in c.flags for c in checks) for flag in FLAGS}
        return {
            "file": QA_KEY,
            "model": self.model,
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": len(self.files),
            "chunks": len(checks),
            "flagged": len(self.flagged),
            "flags": {flag: n for flag, n in counts.items() if n},
            "error_rate": round(sum(c.errors for c in checks) / tokens, 4) if tokens else 0.0,
            "audio_seconds": round(sum(f.audio_seconds for f in self.files), 3),
            "seconds": round(self.seconds, 3),
            **({"stages": self.stages.to_json()} if self.stages else {}),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "chunks": [
                {
                    "file": f.target.file,
                    "chunk": c.index,
                    "start": round(c.start, 3),
                    "end": round(c.end, 3),
                    "error_rate": round(c.error_rate, 4),
                    "flags": c.flags,
                    **({"stage": c.stage} if c.stage else {}),
                    **({"text": c.text, "heard": c.heard} if c.flags else {}),
                }
                for f in self.files
                for c in f.checks
            ],
        }


def targets(manifest: dict[str, Any]) -> Iterator[Target]:
    """The files a manifest's chunks are in: its items, its chapter files, or (a book
    written as one file) the book with every chapter's chunks at its place."""
    records = manifest.get("items" if is_catalogue(manifest) else "chapters") or []
    if is_catalogue(manifest) or all(r.get("file") for r in records):
        for record in records:
            if record.get("file"):
                yield Target(
                    record["file"],
                    str(record.get("title") or record["file"]),
                    _spans(record, 0.0),
                    (record.get("timings") or {}).get("json"),
                    float(record.get("start") or 0.0),
                    record.get("index"),
                )
    elif manifest.get("file"):
        spans = [s for r in records for s in _spans(r, float(r.get("start") or 0.0))]
        yield Target(
            manifest["file"],
            str(manifest.get("title") or manifest["file"]),
            spans,
            (manifest.get("timings") or {}).get("json"),
        )


def _spans(record: dict[str, Any], offset: float) -> list[Span]:
    return [
        Span(str(c["text"]), offset + float(c["start"]), offset + float(c["end"]))
        for c in record.get("chunks") or []
    ]


def load_manifest(folder: ObjectStore, where: str) -> dict[str, Any]:
    manifest = read_manifest(folder)
    if manifest is None or not any(True for _ in targets(manifest)):
        raise InputError(f"{where}: no manifest.json with audio files: is it an output folder?")
    return manifest


def run_qa(
    folder: ObjectStore,
    recogniser: Recogniser,
    *,
    where: str,
    progress: Callable[[Target], None] = lambda _t: None,
) -> QaReport:
    """Check every file of the folder's manifest in two stages (`TwoStageChecker`);
    nothing is written: see `record`."""
    manifest = load_manifest(folder, where)
    checker = TwoStageChecker(recogniser)
    report = QaReport(recogniser.name, stages=checker.stats)
    # faster-whisper's decoder runs a full garbage collection per file (a resampler that
    # leaks otherwise); with the model and the CLI loaded that scan cost ~5% of QA's
    # time. What is alive now lives to the end of the command: leave it out of the scan.
    gc.freeze()
    started = time.perf_counter()
    for target in targets(manifest):
        progress(target)
        try:
            data = folder.get(target.file)
        except NotFoundError as exc:
            raise InputError(f"{where}: {target.file} is in the manifest but missing") from exc
        samples = decode(io.BytesIO(data))
        checks = checker.check(target.spans, samples)
        report.files.append(FileResult(target, checks, samples.size / SAMPLE_RATE))
    report.seconds = time.perf_counter() - started
    return report


def record(folder: ObjectStore, report: QaReport, *, word_vtt: bool = False) -> None:
    """Write qa.json, the word times into each checked file's timing JSON (and the
    book's), optionally word-level WebVTT beside each file, and the summary into the
    manifest, last: a manifest that names a QA run has all of its files."""
    folder.put(
        QA_KEY,
        json.dumps(report.to_json(), indent=2, ensure_ascii=False, allow_nan=False).encode(),
        content_type="application/json",
    )
    manifest = read_manifest(folder) or {}
    book_words: dict[tuple[int | None, int], list[dict[str, Any]]] = {}
    for result in report.files:
        target = result.target
        per_chunk: list[list[dict[str, Any]]] = [
            [{"text": w.text, "start": w.start, "end": w.end} for w in c.words]
            for c in result.checks
        ]
        if target.timings:
            _add_words(folder, target.timings, functools.partial(_nth, per_chunk))
        for i, chunk in enumerate(result.checks):
            book_words[(target.chapter, i)] = [
                {
                    "text": w.text,
                    "start": round(w.start + target.offset, 3),
                    "end": round(w.end + target.offset, 3),
                }
                for w in chunk.words
            ]
        if word_vtt:
            vtt = to_word_vtt([(w.text, w.start, w.end) for c in result.checks for w in c.words])
            folder.put(_words_vtt_key(target.file), vtt.encode(), content_type="text/vtt")
    book_json = (manifest.get("timings") or {}).get("json")
    if (
        book_json
        and not is_catalogue(manifest)
        and all(r.target.chapter is not None for r in report.files)
    ):
        seen: dict[int | None, int] = {}

        def book_entry(_i: int, entry: dict[str, Any]) -> list[dict[str, Any]] | None:
            chapter = entry.get("chapter")
            place = seen.get(chapter, 0)
            seen[chapter] = place + 1
            words = book_words.get((chapter, place))
            if words is None:
                return None
            # chapter and book times are each rounded to the millisecond: keep every word
            # inside the book entry's own span
            low, high = float(entry["start"]), float(entry["end"])
            return [
                {
                    **w,
                    "start": min(max(w["start"], low), high),
                    "end": min(max(w["end"], low), high),
                }
                for w in words
            ]

        _add_words(folder, book_json, book_entry)
    if manifest:
        manifest["qa"] = report.summary()
        write_manifest(folder, manifest)


def _nth(
    per_chunk: list[list[dict[str, Any]]], index: int, _entry: dict[str, Any]
) -> list[dict[str, Any]] | None:
    return per_chunk[index] if index < len(per_chunk) else None


def _words_vtt_key(file: str) -> str:
    stem = file.rsplit(".", 1)[0]
    return f"{stem}.words.vtt"


def _add_words(
    folder: ObjectStore,
    key: str,
    words_for: Callable[[int, dict[str, Any]], list[dict[str, Any]] | None],
) -> None:
    """Put a `words` list into each chunk entry of a timing JSON file that has one."""
    try:
        timings = json.loads(folder.get(key))
    except (NotFoundError, ValueError):
        return
    for i, entry in enumerate(timings.get("chunks") or []):
        words = words_for(i, entry)
        if words is not None:
            entry["words"] = words
    folder.put(
        key,
        json.dumps(timings, indent=2, ensure_ascii=False, allow_nan=False).encode(),
        content_type="application/json",
    )
