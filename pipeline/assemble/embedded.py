"""Assembly in one process (embedded mode): every chapter file and the book in one pass.

Distributed workers assemble items one by one and write the book afterwards
(pipeline.assemble.items and .book). In one process that would read and master every chunk twice and
encode the book only after the chapters; here each ready chapter is mastered on its
own, then one write pass streams every chapter's finished samples into its chapter file
and the book file at once, on two encoder threads. The files are the same either way:
the same claims, the same per-chapter mastering, recorded the same way.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import BinaryIO, cast

from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.book import finalize_job, measure_book, write_book
from pipeline.assemble.chapters import AssembledChapter, Loudness
from pipeline.assemble.chunk_audio import ChunkAudioCache
from pipeline.assemble.deliverables import Deliverables, chapter_marks
from pipeline.assemble.items import (
    AssemblyResult,
    chunk_pieces,
    item_meta_for,
    item_pauses,
    master_segments,
    missing_chunks,
)
from pipeline.assemble.keys import book_key_for, item_key
from pipeline.assemble.leases import reopen_vanished
from pipeline.assemble.timeline import finished, timeline_segments
from pipeline.assemble.writer import CHAPTER_QUEUE, EncoderThread, Target, finish_all
from pipeline.audio.concat import (
    ConcatError,
    Silence,
    concat_mp3,
    fits_between,
    frame_samples,
    frames_for,
)
from pipeline.audio.encode import FileMeta, codec_for
from pipeline.audio.master import LoudnessAccumulator, Mastering, Segment
from pipeline.audio.stitch import ChapterSpan, layout
from pipeline.errors import ChunkObjectsMissing, InputError, RetryableError
from pipeline.stages import stage
from pipeline.state import assembly, store
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus, JobStatus
from pipeline.storage.base import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class _Planned:
    chapter: AssembledChapter
    # False: a chapter finished earlier, or one without a file of its own (chapter files
    # turned off); it only goes into the book
    write_file: bool
    meta: FileMeta


def _plan(
    factory: sessionmaker[Session],
    job_id: uuid.UUID,
    *,
    rewrite: bool,
    output_store: ObjectStore,
) -> tuple[list[_Planned], int | None, dict[str, object], Deliverables]:
    """The chapters that go into the book; items claimed now whose chunks failed are
    recorded failed here. Chapters finished earlier keep their recorded mastering."""
    planned: list[_Planned] = []
    rate: int | None = None
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        items = store.job_items(session, job_id=job_id)
        info: dict[str, object] = {
            "options": dict(job.options),
            "format": job.output_format,
            "title": job.title,
            "author": job.author or "",
            "source": job.source_name,
            "kind": job.kind,
        }
        deliverables = Deliverables.of(job.output_format, dict(job.options), output_store)
        own_files = job.kind == "catalogue" or deliverables.chapter_files
        for item in items:
            if item.status not in (ItemStatus.ASSEMBLING, ItemStatus.DONE):
                continue
            chunks = store.item_chunks(session, item_id=item.id)
            if item.status == ItemStatus.ASSEMBLING and (missing := missing_chunks(item, chunks)):
                store.fail_item(
                    session,
                    item_id=item.id,
                    error=f"{len(missing)} of {len(chunks)} chunks not rendered",
                )
                continue
            pieces, rate = chunk_pieces(item, chunks, rate)
            stored = (
                Mastering(**item.mastering)
                if item.status == ItemStatus.DONE and item.mastering
                else None
            )
            key = item_key(job, item, len(items)) if own_files else None
            planned.append(
                _Planned(
                    AssembledChapter(item.id, item.title, pieces, stored, key),
                    write_file=key is not None
                    and (item.status == ItemStatus.ASSEMBLING or rewrite),
                    meta=item_meta_for(job, item, len(items), deliverables),
                )
            )
    return planned, rate, info, deliverables


def _write_all(
    planned: list[_Planned],
    rate: int,
    info: dict[str, object],
    deliverables: Deliverables,
    chunk_store: ObjectStore,
    output_store: ObjectStore,
) -> tuple[list[Mastering], str | None, Loudness | None, list[float]]:
    options: dict[str, object] = info["options"]  # type: ignore[assignment]
    chapters = [p.chapter for p in planned]
    catalogue = info["kind"] == "catalogue"
    align = 1 if catalogue else deliverables.chapter_align(rate)
    spans = layout(
        [[p.length for p in c.pieces] for c in chapters], rate, item_pauses(options), align=align
    )
    durations = [(s.end - s.start) / rate for s in spans]
    # An MP3 book is built from the chapter files' frames rather than encoded again
    # (pipeline.audio.concat): every chapter must be written now, with room for silence.
    from_chapters = (
        not catalogue
        and align > 1
        and all(p.write_file for p in planned)
        and all(fits_between(a.end - a.start, b.start - a.end, rate) for a, b in pairwise(spans))
    )
    book_key = (
        None
        if catalogue
        else book_key_for(str(info["source"]), codec_for(deliverables.fmt).extension)
    )
    with ChunkAudioCache(chunk_store) as cache:
        segments = timeline_segments(chapters, spans, cache, rate)
        meter = LoudnessAccumulator(rate, spans[-1].end)
        book = EncoderThread(output_store=output_store, rate=rate)
        # Chapter files go to two encoders in turn, each taking a whole chapter at once
        # (CHAPTER_QUEUE), so the next chapter is measured while the last ones encode.
        parts = [
            EncoderThread(output_store=output_store, rate=rate, queue_size=CHAPTER_QUEUE)
            for _ in range(2)
        ]
        writers = [book, *parts]
        for writer in writers:
            writer.start()
        book_targets: list[Target] = []
        meta = FileMeta()
        masterings: list[Mastering] = []
        try:
            if book_key:
                marks = chapter_marks([c.title for c in chapters], spans)
                meta = deliverables.book_meta(
                    str(info["title"]), str(info["author"]) or None, marks
                )
                book_targets = deliverables.targets(book_key, meta)
                if from_chapters:
                    book_targets = book_targets[1:]  # a lossless master is still encoded
                if book_targets:
                    book.send("open", book_targets)
            tone = deliverables.room_tone(rate)
            for index, (chapter, (pause, own)) in enumerate(
                zip(chapters, _by_chapter(segments, len(chapters)), strict=True)
            ):
                mastering = chapter.mastering or master_segments(own, rate, deliverables)
                masterings.append(mastering)
                part = parts[index % len(parts)]
                if planned[index].write_file:
                    assert chapter.key is not None
                    part.send("open", deliverables.targets(chapter.key, planned[index].meta))
                stretches: list[tuple[Segment, Mastering | None, int | None]]
                stretches = [(s, None, None) for s in pause]
                stretches += [(s, mastering, spans[index].start) for s in own]
                for segment, plan, origin in stretches:
                    audio = finished(segment, plan, tone, origin)
                    if plan is not None and planned[index].write_file:
                        part.send("audio", audio)
                    if book_targets:
                        book.send("audio", audio)
                    if book_key:
                        with stage("master.book_loudness"):
                            meter.feed(audio)
                if planned[index].write_file:
                    part.send("close")
                cache.forget(piece.key for piece in chapter.pieces)  # memory: one chapter
            if book_targets:
                book.send("close")
        except BaseException as failure:
            finish_all(writers, failure)
            raise
        mastered = [
            AssembledChapter(c.item_id, c.title, c.pieces, m, c.key)
            for c, m in zip(chapters, masterings, strict=True)
        ]
        finish_all(writers, None)
        loudness = measure_book(meter, masterings) if book_key else None
        if from_chapters and book_key:
            try:
                with stage("encode.mp3_from_chapters"):
                    _book_from_chapters(
                        output_store,
                        book_key,
                        mastered,
                        spans,
                        rate,
                        meta,
                        deliverables.bitrate_kbps,
                    )
            except ConcatError as exc:  # not expected: the layout made room; encode instead
                log.warning(
                    "building %s from its chapter files failed (%s); encoding it", book_key, exc
                )
                loudness = write_book(
                    output_store,
                    book_key,
                    mastered,
                    segments,
                    spans,
                    job={"title": info["title"], "author": str(info["author"]) or None},
                    deliverables=deliverables,
                    rate=rate,
                )
    return masterings, book_key, loudness, durations


def _by_chapter(
    segments: list[tuple[int | None, Segment]], count: int
) -> list[tuple[list[Segment], list[Segment]]]:
    """Each chapter's stretches of the timeline: the pause before it (none before the
    first), then its own."""
    out: list[tuple[list[Segment], list[Segment]]] = [([], []) for _ in range(count)]
    pending: list[Segment] = []
    for at, segment in segments:
        if at is None:
            pending.append(segment)
            continue
        out[at][0].extend(pending)
        pending = []
        out[at][1].append(segment)
    return out


def _book_from_chapters(
    output_store: ObjectStore,
    key: str,
    chapters: list[AssembledChapter],
    spans: list[ChapterSpan],
    rate: int,
    meta: FileMeta,
    bitrate_kbps: int | None,
) -> None:
    """The MP3 book as its chapter files' frames with silent frames between them."""
    frame = frame_samples(rate)

    def parts() -> Iterator[bytes | Silence]:
        for index, chapter in enumerate(chapters):
            assert chapter.key is not None
            yield output_store.get(chapter.key)
            if index + 1 < len(spans):
                span = spans[index]
                frames_end = span.start + frames_for(span.end - span.start, rate) * frame
                yield Silence((spans[index + 1].start - frames_end) // frame)

    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as spooled:
        sink = cast(BinaryIO, spooled)
        concat_mp3(
            sink,
            parts(),
            sample_rate=rate,
            starts=[span.start for span in spans],
            meta=meta,
            bitrate_kbps=bitrate_kbps,
        )
        sink.seek(0)
        output_store.put_file(key, sink, content_type=codec_for("mp3").content_type)


def assemble_job(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store: ObjectStore,
    max_attempts: int = 3,
) -> AssemblyResult:
    """Every step after rendering, in one process: claim the ready items (and take any an
    interrupted run left claimed), write every chapter and the book in one pass, then the
    manifest. A job that is finished already has its files written again (its output
    folder lost them or holds another job's).

    Each run counts an assembly attempt on the items it takes up; an item whose assembly
    killed the process `max_attempts` times is failed instead. Chunk objects that are
    gone send their chunks back to pending (the job with them, to rendering) and raise
    ChunkObjectsMissing: render the job again, then assemble it again."""
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.status in (JobStatus.PENDING, JobStatus.CANCELLED):
            raise InputError(f"job {job_id} is {job.status}; it cannot be assembled")
        rewrite = job.status.final
        if not rewrite:
            store.claim_ready_items(session, job_id=job_id)
            assembly.count_embedded_attempt(session, job_id=job_id, max_attempts=max_attempts)
    planned, rate, info, deliverables = _plan(
        factory, job_id, rewrite=rewrite, output_store=output_store
    )
    book: tuple[str, Loudness] | None = None
    if planned and rate is not None:
        try:
            masterings, book_key, loudness, durations = _write_all(
                planned, rate, info, deliverables, chunk_store, output_store
            )
        except ChunkObjectsMissing as exc:
            reopened = reopen_vanished(factory, chunk_store, job_id=job_id, keys=exc.keys)
            raise ChunkObjectsMissing(
                f"{len(reopened.chunk_ids)} rendered chunks of job {job_id} lost their audio "
                "(deleted from the chunk store); they are to be rendered again",
                exc.keys,
            ) from exc
        with transaction(factory) as session:
            for plan, mastering, seconds in zip(planned, masterings, durations, strict=True):
                if plan.chapter.mastering is None and not rewrite:
                    store.complete_item(
                        session,
                        item_id=plan.chapter.item_id,
                        object_key=plan.chapter.key,
                        duration=seconds,
                        mastering=asdict(mastering),
                    )
        if book_key is not None and loudness is not None:
            book = (book_key, loudness)
    if not rewrite:
        with transaction(factory) as session:
            if not store.claim_finalization(session, job_id=job_id):
                status = store.get_job(session, job_id).status
                if status.final:
                    # another renderer of this job (the same command started twice)
                    # finalized it meanwhile: write its outputs as a finished job's
                    rewrite = True
                elif status != JobStatus.ASSEMBLING:
                    raise RetryableError(
                        f"job {job_id} still has chunks being rendered; try again later"
                    )
    return finalize_job(
        factory,
        job_id=job_id,
        chunk_store=chunk_store,
        output_store=output_store,
        rewrite=rewrite,
        book=book,
    )
