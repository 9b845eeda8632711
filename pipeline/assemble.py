"""Assembly: rendered chunks -> one file per item, then the whole book and manifest.json.

Two steps, each run exactly once per item or job however workers interleave (the state
module's claims decide who runs them): `assemble_item` masters one chapter or catalogue
item to the loudness target and writes its file; `finalize_job` writes the whole-book
file and the manifest. Audio is never held in memory whole: the layout (where each chunk
and pause sits) comes from the database and chunks are streamed from the chunk store.
The book applies each chapter's recorded mastering to the same chunks, so a chapter file
and its stretch of the book agree to the sample. Outputs are built from the database's
record of chunks in reading order, never by appending, so assembling twice writes the
same files.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.chunks import ChunkAudioCache, ChunkPiece
from pipeline.audio.encode import codec_for, output_rate
from pipeline.audio.master import (
    LoudnessAccumulator,
    Mastering,
    Segment,
    plan_mastering,
)
from pipeline.audio.stitch import ChapterSpan, ChunkLength, Pauses, layout
from pipeline.audio.writer import write_stream
from pipeline.catalogue_summary import summary_rows, write_summary
from pipeline.deliverables import (
    Deliverables,
    chapter_marks,
    manifest_files,
)
from pipeline.errors import InputError, PermanentError, RetryableError
from pipeline.item_names import slugify
from pipeline.manifest import (
    MANIFEST_KEY,
    AssembledChapter,
    Loudness,
    book_files,
    chapter_entries,
    loudness_record,
    previous_files,
)
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, Item, ItemStatus, Job, JobStatus
from pipeline.storage import ObjectStore
from pipeline.timeline import book_samples, finished, timeline_segments


@dataclass
class AssemblyResult:
    status: JobStatus
    book_key: str | None
    chapter_keys: list[str]
    duration: float
    loudness: Loudness | None
    failed_chunks: list[dict[str, Any]] = field(default_factory=list)
    items: int = 0  # chapters (or catalogue items) assembled, with a file of their own or not
    other_files: list[str] = field(default_factory=list)  # masters, timing files, cover


@dataclass(frozen=True)
class ItemAssembly:
    """What assemble_item did: `status` is the item's state afterwards."""

    item_id: uuid.UUID
    status: ItemStatus
    key: str | None = None
    duration: float = 0.0


def _pauses(options: dict[str, Any]) -> Pauses:
    return Pauses(
        options["pause_sentence_ms"],
        options["pause_paragraph_ms"],
        options["pause_chapter_ms"],
        options.get("head_silence_ms", 0),
        options.get("tail_silence_ms", 0),
    )


def _pieces(item: Item, chunks: Any, rate: int | None) -> tuple[list[ChunkPiece], int]:
    """The item's done chunks as pieces; every chunk must share one sample rate."""
    pieces = []
    for chunk in chunks:
        assert (
            chunk.object_key is not None
            and chunk.sample_rate
            and chunk.duration_seconds is not None
        )
        if rate is not None and chunk.sample_rate != rate:
            raise PermanentError(f"chunk {chunk.seq} is {chunk.sample_rate} Hz, the rest {rate} Hz")
        rate = chunk.sample_rate
        samples = round(chunk.duration_seconds * chunk.sample_rate)
        pieces.append(
            ChunkPiece(
                chunk.seq, chunk.object_key, ChunkLength(chunk.text, chunk.paragraph_start, samples)
            )
        )
    assert rate is not None
    return pieces, rate


def _missing(item: Item, chunks: Any) -> list[dict[str, Any]]:
    return [
        {
            "item": item.title,
            "seq": c.seq,
            "text": c.text,
            "status": str(c.status),
            "error": c.error,
        }
        for c in chunks
        if c.status != ChunkStatus.DONE or c.object_key is None
    ]


ITEMS_FOLDER = "items"


def item_key(job: Job, item: Item, items_total: int) -> str:
    """Where an item's file goes: chapters/NN-title.ext for books, items/<name> for
    catalogues (the name their template gave them when planned)."""
    extension = codec_for(job.output_format).extension
    if job.kind == "catalogue" and item.file_name:
        return f"{ITEMS_FOLDER}/{item.file_name}"
    if job.kind == "catalogue":  # planned before item names were recorded
        return f"items/{slugify(item.title, fallback=f'item-{item.position + 1}')}.{extension}"
    width = max(2, len(str(items_total)))
    name = slugify(item.title, fallback="chapter")
    return f"chapters/{item.position + 1:0{width}d}-{name}.{extension}"


def master_segments(segments: list[Segment], rate: int, deliverables: Deliverables) -> Mastering:
    """Plan one chapter's (or item's) mastering to the job's target."""
    target = deliverables.target
    return plan_mastering(
        segments,
        rate,
        target_lufs=target.level,
        ceiling_dbtp=target.ceiling_dbtp,
        measure=target.measure,
    )


def item_meta_for(job: Job, item: Item, items_total: int, deliverables: Deliverables) -> Any:
    """The tags (and cover) of an item's own file."""
    track = f"{item.position + 1}/{items_total}" if job.kind != "catalogue" else None
    return deliverables.item_meta(item.title, job.title, job.author, track)


def assemble_item(
    factory: sessionmaker[Session],
    *,
    item_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store: ObjectStore,
    rewrite: bool = False,
) -> ItemAssembly:
    """Master and encode one claimed item (chapter or catalogue entry) into its file.

    Only an item in `assembling` (claimed by store.claim_ready_items) is worked on; any
    other state means someone already did it, and nothing changes. An item with chunks
    that could not be rendered is recorded failed, with no file. `rewrite` writes a done
    item's file again (its output folder lost it) without changing its state.
    """
    with transaction(factory) as session:
        item = store.get_item(session, item_id=item_id)
        if item.status != ItemStatus.ASSEMBLING and not (
            rewrite and item.status == ItemStatus.DONE
        ):
            return ItemAssembly(item_id, item.status, item.object_key, item.duration_seconds or 0.0)
        job = store.get_job(session, item.job_id)
        options = dict(job.options)
        deliverables = Deliverables.of(job.output_format, options, output_store)
        items_total = len(store.job_items(session, job_id=job.id))
        meta = item_meta_for(job, item, items_total, deliverables)
        # A book's chapters always get mastered (the book applies it); their own files
        # only when asked for. Catalogue items are files by nature.
        key = (
            item_key(job, item, items_total)
            if job.kind == "catalogue" or deliverables.chapter_files
            else None
        )
        chunks = store.item_chunks(session, item_id=item_id)
        missing = _missing(item, chunks)
        if missing:
            store.fail_item(
                session,
                item_id=item_id,
                error=f"{len(missing)} of {len(chunks)} chunks not rendered",
            )
            return ItemAssembly(item_id, ItemStatus.FAILED)
        pieces, rate = _pieces(item, chunks, None)

    (span,) = layout([[p.length for p in pieces]], rate, _pauses(options))
    tone = deliverables.room_tone(rate)
    with ChunkAudioCache(chunk_store) as cache:
        chapter = AssembledChapter(item_id, item.title, pieces)
        segments = [s for _, s in timeline_segments([chapter], [span], cache, rate)]
        mastering = master_segments(segments, rate, deliverables)
        if key is not None:
            write_stream(
                output_store,
                deliverables.targets(key, meta),
                (finished(segment, mastering, tone, 0) for segment in segments),
                rate=rate,
            )
    duration = span.end / rate
    with transaction(factory) as session:
        store.complete_item(
            session, item_id=item_id, object_key=key, duration=duration, mastering=asdict(mastering)
        )
    return ItemAssembly(item_id, ItemStatus.DONE, key, duration)


def book_key_for(source: str, extension: str) -> str:
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{slugify(stem, fallback='book')}.{extension}"


def _read_done_items(
    session: Session, job_id: uuid.UUID
) -> tuple[list[AssembledChapter], list[dict[str, Any]], int | None]:
    chapters: list[AssembledChapter] = []
    failed_chunks: list[dict[str, Any]] = []
    rate: int | None = None
    for item in store.job_items(session, job_id=job_id):
        chunks = store.item_chunks(session, item_id=item.id)
        if item.status != ItemStatus.DONE or item.mastering is None:
            failed_chunks += _missing(item, chunks)
            continue
        pieces, rate = _pieces(item, chunks, rate)
        chapters.append(
            AssembledChapter(
                item.id, item.title, pieces, Mastering(**item.mastering), item.object_key
            )
        )
    return chapters, failed_chunks, rate


def measure_book(meter: LoudnessAccumulator, masterings: list[Mastering]) -> Loudness:
    return Loudness(
        meter.integrated(),
        max(m.true_peak_dbtp for m in masterings),
        meter.rms_db(),
        meter.loudness_range(),
    )


def _write_book(
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
) -> AssemblyResult:
    """Write the whole-book file (books), the timing files and manifest.json, then record
    the job finished.

    `book` is the key and loudness of a book file the caller wrote already (embedded
    mode writes it in the same pass as the chapters).

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
        spans = layout([[p.length for p in c.pieces] for c in chapters], rate, _pauses(options))
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
                loudness = _write_book(
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
    manifest = {
        "job_id": str(job_id),
        "kind": kind,
        "source": source,
        "title": info["title"],
        "author": info["author"],
        "format": info["format"],
        "sample_rate": rate,
        "file_sample_rate": output_rate(fmt, rate, deliverables.file_rate) if rate else None,
        "duration": round(duration, 3),
        "file": book_key,
        **book_record,
        "cover": deliverables.cover.key if deliverables.cover else None,
        "loudness": None if loudness is None else loudness_record(loudness, deliverables),
        "chapters" if kind != "catalogue" else "items": manifest_items,
        "failed_chunks": failed_chunks,
        **({"summary": summary_key} if summary_key else {}),
    }
    output_store.put(
        MANIFEST_KEY,
        json.dumps(manifest, indent=2, ensure_ascii=False).encode(),
        content_type="application/json",
    )
    keys = [c.key for c in chapters if c.key]
    # Files an earlier assembly of this source listed and this one does not (a chapter
    # renamed or removed since) would otherwise linger beside the new ones. When nothing
    # was produced this time, the earlier files are the only audio there is: keep them.
    if chapters:
        for key in stale - {key for _, key in manifest_files(manifest)}:
            output_store.delete(key)

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
