"""manifest.json, written and read here only: each chapter's or item's entry (times,
loudness, master, timing files), the book's, the files a manifest lists, and what an
earlier manifest in the same folder listed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pipeline.assemble.chapters import AssembledChapter, Loudness
from pipeline.assemble.deliverables import Deliverables, timed_chunks
from pipeline.assemble.keys import MANIFEST_KEY, master_key
from pipeline.audio.stitch import ChapterSpan
from pipeline.errors import NotFoundError
from pipeline.storage.base import ObjectStore


def previous_files(output_store: ObjectStore, source: str) -> set[str]:
    """Files the folder's current manifest lists, if it was written for the same source.

    Another book's files in a shared folder are not ours to remove.
    """
    previous = read_manifest(output_store)
    if previous is None or previous.get("source") != source:
        return set()
    try:
        return {key for kind, key in manifest_files(previous) if kind != "manifest"}
    except (AttributeError, TypeError):
        return set()


def loudness_record(loudness: Loudness, deliverables: Deliverables) -> dict[str, Any]:
    target = deliverables.target
    return {
        "integrated_lufs": round(loudness.output_lufs, 2),
        "true_peak_dbtp": round(loudness.true_peak_dbtp, 2),
        "rms_db": None if loudness.rms_db is None else round(loudness.rms_db, 2),
        "lra": None if loudness.lra is None else round(loudness.lra, 1),
        "preset": target.preset,
        "measure": target.measure,
        "target": target.level,
        "target_lufs": target.level if target.measure == "lufs" else None,
    }


def chapter_entries(
    chapters: list[AssembledChapter],
    spans: list[ChapterSpan],
    *,
    kind: str,
    rate: int,
    deliverables: Deliverables,
    output_store: ObjectStore,
) -> list[dict[str, Any]]:
    """The manifest's chapter (or item) entries; writes each file's timing files."""
    entries = []
    for number, (chapter, span) in enumerate(zip(chapters, spans, strict=True), start=1):
        entry: dict[str, Any] = {
            "index": number,
            "title": chapter.title,
            "file": chapter.key,
            "duration": round((span.end - span.start) / rate, 3),
        }
        if kind != "catalogue":
            entry |= {
                "start": round(span.start / rate, 3),
                "start_sample": span.start,
                "end_sample": span.end,
            }
        if chapter.mastering is not None:
            entry["loudness"] = {
                "measure": chapter.mastering.measure,
                "level": round(chapter.mastering.output_lufs, 2),
                "true_peak_dbtp": round(chapter.mastering.true_peak_dbtp, 2),
            }
        if chapter.key is not None:
            if deliverables.master_format:
                entry["master"] = master_key(chapter.key, deliverables.master_format)
            if deliverables.timings:
                entry["timings"] = deliverables.write_timings(
                    output_store,
                    chapter.key,
                    timed_chunks(span.chunks),
                    rate,
                    duration_samples=span.end - span.start,
                )
        entry["chunks"] = [
            {"text": c.text, "start": round(c.start / rate, 3), "end": round(c.end / rate, 3)}
            for c in span.chunks
        ]
        entries.append(entry)
    return entries


def book_files(
    deliverables: Deliverables,
    output_store: ObjectStore,
    book_key: str,
    chapters: list[AssembledChapter],
    spans: list[ChapterSpan],
    rate: int,
) -> dict[str, Any]:
    """The book's master and timing files, for the manifest (timings written here)."""
    record: dict[str, Any] = {}
    if deliverables.master_format:
        record["master"] = master_key(book_key, deliverables.master_format)
    if deliverables.timings:
        record["timings"] = deliverables.write_timings(
            output_store,
            book_key,
            [
                timed
                for number, span in enumerate(spans, start=1)
                for timed in timed_chunks(span.chunks, span.start, number)
            ],
            rate,
            duration_samples=spans[-1].end,
            chapters=[
                {
                    "index": number,
                    "title": chapter.title,
                    "start": round(span.start / rate, 3),
                    "end": round(span.end / rate, 3),
                }
                for number, (chapter, span) in enumerate(zip(chapters, spans, strict=True), 1)
            ],
        )
    return record


def job_manifest(
    *,
    job_id: uuid.UUID,
    kind: str,
    source: str,
    job: dict[str, Any],
    sample_rate: int | None,
    file_sample_rate: int | None,
    duration: float,
    book_key: str | None,
    book_record: dict[str, Any],
    cover: str | None,
    loudness: dict[str, Any] | None,
    entries: list[dict[str, Any]],
    failed_chunks: list[dict[str, Any]],
    summary: str | None,
) -> dict[str, Any]:
    """A finished job's manifest: what it is (`job`: title, author, format), its audio's
    rates and duration, the book file and its masters and timing files (`book_record`),
    the cover, the loudness, each chapter's or item's entry, the failed chunks, and a
    catalogue's summary."""
    return {
        "job_id": str(job_id),
        "kind": kind,
        "source": source,
        "title": job["title"],
        "author": job["author"],
        "format": job["format"],
        "sample_rate": sample_rate,
        "file_sample_rate": file_sample_rate,
        "duration": round(duration, 3),
        "file": book_key,
        **book_record,
        "cover": cover,
        "loudness": loudness,
        "chapters" if kind != "catalogue" else "items": entries,
        "failed_chunks": failed_chunks,
        **({"summary": summary} if summary else {}),
    }


def read_manifest(output_store: ObjectStore) -> dict[str, Any] | None:
    """The folder's manifest.json; None where there is none, or it is not a manifest
    (unreadable JSON, or not an object)."""
    try:
        manifest = json.loads(output_store.get(MANIFEST_KEY))
    except (NotFoundError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def manifest_of_job(output_store: ObjectStore, job_id: uuid.UUID) -> dict[str, Any] | None:
    """The folder's manifest if this job wrote it (another job may have written the same
    folder since), else None."""
    manifest = read_manifest(output_store)
    if manifest is None or manifest.get("job_id") != str(job_id):
        return None
    return manifest


def is_catalogue(manifest: dict[str, Any]) -> bool:
    """Whether the manifest is a catalogue's (items) rather than a book's (chapters)."""
    return manifest.get("kind") == "catalogue"


def loudness_measure(manifest: dict[str, Any]) -> str | None:
    """What the job was mastered to, as its manifest records it: "lufs" or "rms"."""
    loudness = manifest.get("loudness") or {}
    return loudness.get("measure") if isinstance(loudness, dict) else None


def write_manifest(output_store: ObjectStore, manifest: dict[str, Any]) -> None:
    """Write manifest.json into the folder (replacing an earlier one)."""
    output_store.put(
        MANIFEST_KEY,
        json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False).encode(),
        content_type="application/json",
    )


def manifest_files(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """Every file a manifest lists, as (kind, key): the manifest itself first, then the
    book, its chapters or items, their masters and timing files, the cover, a
    catalogue's summary CSV, qa.json once speech-recognition QA has run, and the
    read-along EPUB once written."""
    files = [("manifest", MANIFEST_KEY)]

    def entry(kind: str, record: dict[str, Any]) -> None:
        if record.get("file"):
            files.append((kind, record["file"]))
        if record.get("master"):
            files.append(("master", record["master"]))
        for key in (record.get("timings") or {}).values():
            files.append(("timing", key))

    entry("book", manifest)
    for chapter in manifest.get("chapters", []):
        entry("chapter", chapter)
    for item in manifest.get("items", []):
        entry("item", item)
    if manifest.get("cover"):
        files.append(("cover", manifest["cover"]))
    if manifest.get("summary"):
        files.append(("summary", manifest["summary"]))
    if isinstance(manifest.get("qa"), dict) and manifest["qa"].get("file"):
        files.append(("qa", manifest["qa"]["file"]))  # qa.json, once QA has run
    if isinstance(manifest.get("read_along"), dict) and manifest["read_along"].get("file"):
        files.append(("read_along", manifest["read_along"]["file"]))  # <name>.epub
    return files
