"""Finalizing a job: the whole-book file, built from each chapter's recorded mastering,
then manifest.json. Run exactly once per job."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.catalogue_summary import summary_rows, write_summary
from pipeline.assemble.chapters import AssembledChapter, Loudness
from pipeline.assemble.chunk_audio import ChunkAudioCache
from pipeline.assemble.deliverables import Deliverables, chapter_marks
from pipeline.assemble.items import AssemblyResult, chunk_pieces, item_pauses, missing_chunks
from pipeline.assemble.keys import MANIFEST_KEY, book_key_for, cover_key
from pipeline.assemble.manifest import (
    book_files,
    chapter_entries,
    job_manifest,
    loudness_record,
    manifest_files,
    previous_files,
    write_manifest,
)
from pipeline.assemble.timeline import book_samples, timeline_segments
from pipeline.assemble.writer import write_stream
from pipeline.audio.encode import codec_for, output_rate
from pipeline.audio.master import (
    LoudnessAccumulator,
    Mastering,
    Segment,
)
from pipeline.audio.stitch import ChapterSpan, layout
from pipeline.errors import InputError, RetryableError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus, JobStatus
from pipeline.storage.base import ObjectStore


def _read_done_items(
    session: Session, job_id: uuid.UUID
) -> tuple[list[AssembledChapter], list[dict[str, Any]], int | None]:
    chapters: list[AssembledChapter] = []
    failed_chunks: list[dict[str, Any]] = []
    rate: int | None = None
    for item in store.job_items(session, job_id=job_id):
        chunks = store.item_chunks(session, item_id=item.id)
        if item.status != ItemStatus.DONE or item.mastering is None:
            failed_chunks += missing_chunks(item, chunks)
            continue
        pieces, rate = chunk_pieces(item, chunks, rate)
        chapters.append(
            AssembledChapter(
                item.id, item.title, pieces, Mastering(**item.mastering), item.object_key
            )
        )
    return chapters, failed_chunks, rate


def measure_book(meter: LoudnessAccumulator, masterings: list[Mastering]) -> Loudness:
    return Loudness(
        meter.level(),
        max(m.true_peak_dbtp for m in masterings),
        meter.rms_db(),
        meter.loudness_range(),
    )


def write_book(
    output_store: ObjectStore,
    key: str,
    chapters: list[AssembledChapter],
    segments: list[tuple[int | None, Segment]],
    spans: list[ChapterSpan],
    *,
    job: dict[str, Any],
    deliverables: Deliverables,
    rate: int,
) -> Loudness:
    """Stream the whole book, each chapter as its own mastering left it; measure it too."""
    meter = LoudnessAccumulator(rate, spans[-1].end)

    def blocks() -> Any:
        for _, audio in book_samples(chapters, segments, spans, deliverables.room_tone(rate)):
            meter.feed(audio)
            yield audio

    marks = chapter_marks([c.title for c in chapters], spans)
    meta = deliverables.book_meta(job["title"], job["author"], marks)
    write_stream(output_store, deliverables.targets(key, meta), blocks(), rate=rate)
    return measure_book(meter, [c.mastering for c in chapters if c.mastering is not None])


def finalize_job(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store: ObjectStore,
    rewrite: bool = False,
    book: tuple[str, Loudness] | None = None,
    before_finish: Callable[[], None] | None = None,
) -> AssemblyResult:
    """Write the whole-book file (books), the timing files and manifest.json, then record
    the job finished.

    `book` is the key and loudness of a book file the caller wrote already (embedded
    mode writes it in the same pass as the chapters). `before_finish` writes what else
    belongs in the folder (distributed mode: QA's results, the read-along EPUB) after
    the manifest and before the job is recorded finished, so a job is never final
    without them; it runs again, from the start, if the step is run again.

    Runs for a job in `assembling` (claimed by store.claim_finalization); for a job that
    is already final it changes nothing and reports what was recorded, unless `rewrite`
    asks for its files to be written again.
    """
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.status.final and not (rewrite and job.status != JobStatus.CANCELLED):
            return AssemblyResult(job.status, None, [], job.audio_seconds or 0.0, None)
        if job.status != JobStatus.ASSEMBLING and not job.status.final:
            raise RetryableError(f"job {job_id} has items still being rendered or assembled")
        options = dict(job.options)
        fmt = job.output_format
        info = {"format": fmt, "title": job.title, "author": job.author}
        kind, source = job.kind, job.source_name
        chapters, failed_chunks, rate = _read_done_items(session, job_id)
        summary = (
            summary_rows(store.job_items(session, job_id=job_id), failed_chunks)
            if kind == "catalogue"
            else None
        )

    deliverables = Deliverables.of(fmt, options, output_store)
    codec = codec_for(fmt)
    book_key: str | None = None
    loudness: Loudness | None = None
    duration = 0.0
    manifest_items: list[dict[str, Any]] = []
    book_record: dict[str, Any] = {}
    stale = previous_files(output_store, source)
    if chapters and rate is not None:
        spans = layout(
            [[p.length for p in c.pieces] for c in chapters],
            rate,
            item_pauses(options),
            align=deliverables.chapter_align(rate) if kind != "catalogue" else 1,
        )
        manifest_items = chapter_entries(
            chapters,
            spans,
            kind=kind,
            rate=rate,
            deliverables=deliverables,
            output_store=output_store,
        )
        if kind != "catalogue" and book is not None:
            book_key, loudness = book
        elif kind != "catalogue":
            book_key = book_key_for(source, codec.extension)
            with ChunkAudioCache(chunk_store) as cache:
                segments = timeline_segments(chapters, spans, cache, rate)
                loudness = write_book(
                    output_store,
                    book_key,
                    chapters,
                    segments,
                    spans,
                    job=info,
                    deliverables=deliverables,
                    rate=rate,
                )
        if kind != "catalogue":
            duration = spans[-1].end / rate
        else:
            duration = sum((s.end - s.start) / rate for s in spans)
        if book_key is not None:
            book_record = book_files(deliverables, output_store, book_key, chapters, spans, rate)

    summary_key = write_summary(output_store, summary) if summary is not None else None
    manifest = job_manifest(
        job_id=job_id,
        kind=kind,
        source=source,
        job=info,
        sample_rate=rate,
        file_sample_rate=output_rate(fmt, rate, deliverables.file_rate) if rate else None,
        duration=duration,
        book_key=book_key,
        book_record=book_record,
        cover=cover_key(deliverables.cover) if deliverables.cover else None,
        loudness=None if loudness is None else loudness_record(loudness, deliverables),
        entries=manifest_items,
        failed_chunks=failed_chunks,
        summary=summary_key,
    )
    write_manifest(output_store, manifest)
    keys = [c.key for c in chapters if c.key]
    # Files an earlier assembly of this source listed and this one does not (a chapter
    # renamed or removed since) would otherwise linger beside the new ones. When nothing
    # was produced this time, the earlier files are the only audio there is: keep them.
    if chapters:
        for key in stale - {key for _, key in manifest_files(manifest)}:
            output_store.delete(key)
    if before_finish is not None:
        before_finish()

    try:
        with transaction(factory) as session:
            status = store.get_job(session, job_id).status
            if status == JobStatus.ASSEMBLING:
                status = store.finish_job(session, job_id=job_id, audio_seconds=duration)
    except InputError:
        # A second copy of this step finished the job a moment earlier: same files.
        with transaction(factory) as session:
            status = store.get_job(session, job_id).status
    audio = {book_key, *keys, MANIFEST_KEY}
    others = [key for _, key in manifest_files(manifest) if key not in audio]
    return AssemblyResult(
        status, book_key, keys, duration, loudness, failed_chunks, len(chapters), others
    )
