"""Assembly: a job's rendered chunks -> book file, chapter files and manifest.json.

The book and every chapter file come from one stitched, loudness-normalised array (a
chapter file is a slice of the book), so they agree to the sample. Outputs are built from
the database's record of chunks in reading order, never by appending, so assembling twice
writes the same files.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.encode import codec_for, encode
from pipeline.audio.process import LoudnessReport, from_wav_bytes, normalize_loudness
from pipeline.audio.stitch import ChunkAudio, Pauses, stitch
from pipeline.engines.base import AudioArray
from pipeline.errors import InputError, PermanentError, RetryableError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, JobStatus
from pipeline.storage import ObjectStore

MANIFEST_KEY = "manifest.json"


def slugify(text: str, *, fallback: str, limit: int = 60) -> str:
    """A file-name-safe ASCII slug; `fallback` when nothing Latin is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].strip("-")
    return slug or fallback


@dataclass
class AssemblyResult:
    status: JobStatus
    book_key: str | None
    chapter_keys: list[str]
    duration: float
    loudness: LoudnessReport | None
    failed_chunks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _ItemAudio:
    item_id: uuid.UUID
    title: str
    chunks: list[ChunkAudio]


def _load_items(
    session: Session, job_id: uuid.UUID, chunk_store: ObjectStore
) -> tuple[list[_ItemAudio], list[tuple[uuid.UUID, str]], list[dict[str, Any]], int | None]:
    ready: list[_ItemAudio] = []
    failed_items: list[tuple[uuid.UUID, str]] = []
    failed_chunks: list[dict[str, Any]] = []
    cache: dict[str, tuple[AudioArray, int]] = {}
    rate: int | None = None
    for item in store.job_items(session, job_id=job_id):
        chunks = store.item_chunks(session, item_id=item.id)
        missing = [c for c in chunks if c.status != ChunkStatus.DONE or c.object_key is None]
        if missing:
            failed_chunks += [
                {
                    "item": item.title,
                    "seq": c.seq,
                    "text": c.text,
                    "status": str(c.status),
                    "error": c.error,
                }
                for c in missing
            ]
            failed_items.append((item.id, f"{len(missing)} of {len(chunks)} chunks not rendered"))
            continue
        pieces = []
        for chunk in chunks:
            key = chunk.object_key
            assert key is not None
            if key not in cache:
                cache[key] = from_wav_bytes(chunk_store.get(key))
            audio, chunk_rate = cache[key]
            if rate is not None and chunk_rate != rate:
                raise PermanentError(f"chunk {chunk.seq} is {chunk_rate} Hz, the rest {rate} Hz")
            rate = chunk_rate
            pieces.append(ChunkAudio(chunk.text, chunk.paragraph_start, audio))
        ready.append(_ItemAudio(item.id, item.title, pieces))
    return ready, failed_items, failed_chunks, rate


def assemble_job(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store: ObjectStore,
) -> AssemblyResult:
    """Stitch, normalise, encode and write a job's outputs, then record it done."""
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.status == JobStatus.RENDERING and not store.begin_assembly(session, job_id=job_id):
            raise RetryableError(f"job {job_id} still has chunks being rendered; try again later")
        if job.status in (JobStatus.PENDING, JobStatus.CANCELLED):
            raise InputError(f"job {job_id} is {job.status}; it cannot be assembled")
        session.refresh(job)
        options = dict(job.options)
        title, author, fmt, stem = job.title, job.author, job.output_format, job.source_name
        items, failed_items, failed_chunks, rate = _load_items(session, job_id, chunk_store)

    codec = codec_for(fmt)
    pauses = Pauses(
        options["pause_sentence_ms"], options["pause_paragraph_ms"], options["pause_chapter_ms"]
    )
    book_key: str | None = None
    chapter_keys: list[str] = []
    report: LoudnessReport | None = None
    duration = 0.0
    manifest_chapters: list[dict[str, Any]] = []
    done_items: list[tuple[uuid.UUID, str, float]] = []
    if items and rate is not None:
        book, spans = stitch([item.chunks for item in items], rate, pauses)
        book, report = normalize_loudness(
            book, rate, target_lufs=options["loudness_lufs"], ceiling_dbtp=options["true_peak_dbtp"]
        )
        duration = len(book) / rate
        book_key = f"{slugify(stem.rsplit('/', 1)[-1].rsplit('.', 1)[0], fallback='book')}.{codec.extension}"
        width = max(2, len(str(len(items))))
        jobs: list[tuple[str, AudioArray, dict[str, str]]] = [
            (book_key, book, {"title": title, "album": title, "artist": author or ""})
        ]
        for number, (item, span) in enumerate(zip(items, spans, strict=True), start=1):
            key = f"chapters/{number:0{width}d}-{slugify(item.title, fallback='chapter')}.{codec.extension}"
            chapter_keys.append(key)
            jobs.append(
                (
                    key,
                    book[span.start : span.end],
                    {
                        "title": item.title,
                        "album": title,
                        "artist": author or "",
                        "track": f"{number}/{len(items)}",
                    },
                )
            )
            manifest_chapters.append(
                {
                    "index": number,
                    "title": item.title,
                    "file": key,
                    "start": round(span.start / rate, 3),
                    "duration": round((span.end - span.start) / rate, 3),
                    "start_sample": span.start,
                    "end_sample": span.end,
                    "chunks": [
                        {
                            "text": c.text,
                            "start": round(c.start / rate, 3),
                            "end": round(c.end / rate, 3),
                        }
                        for c in span.chunks
                    ],
                }
            )
            done_items.append((item.item_id, key, (span.end - span.start) / rate))

        def write(job_: tuple[str, AudioArray, dict[str, str]]) -> None:
            key, audio, tags = job_
            data = encode(audio, rate, fmt, bitrate_kbps=options.get("bitrate_kbps"), metadata=tags)
            output_store.put(key, data, content_type=codec.content_type)

        # The book alone takes as long to encode as all chapters together: two threads
        # (FFmpeg releases the GIL) halve the wall time.
        def write_all(group: list[tuple[str, AudioArray, dict[str, str]]]) -> None:
            for one in group:
                write(one)

        with ThreadPoolExecutor(max_workers=2) as pool:
            for written in [pool.submit(write_all, jobs[:1]), pool.submit(write_all, jobs[1:])]:
                written.result()

    manifest = {
        "job_id": str(job_id),
        "title": title,
        "author": author,
        "format": fmt,
        "sample_rate": rate,
        "duration": round(duration, 3),
        "file": book_key,
        "loudness": None
        if report is None
        else {
            "integrated_lufs": round(report.output_lufs, 2),
            "true_peak_dbtp": round(report.true_peak_dbtp, 2),
            "gain_db": round(report.gain_db, 2),
            "limited": report.limited,
        },
        "chapters": manifest_chapters,
        "failed_chunks": failed_chunks,
    }
    output_store.put(
        MANIFEST_KEY,
        json.dumps(manifest, indent=2, ensure_ascii=False).encode(),
        content_type="application/json",
    )

    with transaction(factory) as session:
        for item_id, key, seconds in done_items:
            store.complete_item(session, item_id=item_id, object_key=key, duration=seconds)
        for item_id, error in failed_items:
            store.fail_item(session, item_id=item_id, error=error)
        status = store.get_job(session, job_id).status
        if status == JobStatus.ASSEMBLING:
            status = store.finish_job(session, job_id=job_id, audio_seconds=duration)
    return AssemblyResult(status, book_key, chapter_keys, duration, report, failed_chunks)
