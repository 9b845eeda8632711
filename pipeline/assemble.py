"""Assembly: a job's rendered chunks -> book file, chapter files and manifest.json.

The book is never held in memory whole. Its layout (where each chunk and pause sits)
comes from the database; mastering measures the stream of chunks and picks one gain for
the book; the write pass then streams the mastered chunks into the book's encoder and the
current chapter's encoder at once. A chapter file gets exactly the samples the book gets
for that stretch, so they agree to the sample. Outputs are built from the database's
record of chunks in reading order, never by appending, so assembling twice writes the
same files.
"""

from __future__ import annotations

import json
import queue
import re
import tempfile
import threading
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from pipeline.audio.encode import StreamEncoder, codec_for, output_rate
from pipeline.audio.master import Mastering, Segment, oversampled_peaks, plan_mastering
from pipeline.audio.process import from_wav_bytes
from pipeline.audio.stitch import ChapterSpan, ChunkLength, Pauses, layout
from pipeline.engines.base import AudioArray
from pipeline.errors import InputError, NotFoundError, PermanentError, RetryableError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, JobStatus
from pipeline.storage import ObjectStore

MANIFEST_KEY = "manifest.json"
CACHE_BYTES = 512 * 1024 * 1024  # decoded chunks kept between passes; past this, read again


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
    loudness: Mastering | None
    failed_chunks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Piece:
    seq: int
    key: str
    length: ChunkLength


@dataclass(frozen=True)
class _Chapter:
    item_id: uuid.UUID
    title: str
    pieces: list[_Piece]


class ChunkAudioCache:
    """Decoded chunk audio (and its oversampled peaks) by object key, kept between
    mastering passes while under a byte budget; past it, read and computed again."""

    def __init__(self, objects: ObjectStore, budget_bytes: int = CACHE_BYTES) -> None:
        self.objects = objects
        self.budget = budget_bytes
        self.kept: dict[str, AudioArray] = {}
        self.peaks: dict[str, npt.NDArray[np.float32]] = {}
        self.size = 0

    def segment(self, start: int, piece: _Piece, rate: int) -> Segment:
        def peaks(audio: AudioArray) -> npt.NDArray[np.float32]:
            over = self.peaks.get(piece.key)
            if over is None:
                over = oversampled_peaks(audio)
                if self.size + over.nbytes <= self.budget:
                    self.peaks[piece.key] = over
                    self.size += over.nbytes
            return over

        return Segment(start, piece.length.samples, self.loader(piece, rate), peaks)

    def loader(self, piece: _Piece, rate: int) -> Callable[[], AudioArray]:
        def load() -> AudioArray:
            audio = self.kept.get(piece.key)
            if audio is None:
                audio, chunk_rate = from_wav_bytes(self.objects.get(piece.key))
                if chunk_rate != rate or len(audio) != piece.length.samples:
                    raise PermanentError(
                        f"chunk {piece.seq} audio ({len(audio)} samples at {chunk_rate} Hz) does "
                        f"not match its record ({piece.length.samples} at {rate} Hz)"
                    )
                if self.size + audio.nbytes <= self.budget:
                    self.kept[piece.key] = audio
                    self.size += audio.nbytes
            return audio

        return load


def _read_job(
    session: Session, job_id: uuid.UUID
) -> tuple[list[_Chapter], list[tuple[uuid.UUID, str]], list[dict[str, Any]], int | None]:
    chapters: list[_Chapter] = []
    failed_items: list[tuple[uuid.UUID, str]] = []
    failed_chunks: list[dict[str, Any]] = []
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
            assert (
                chunk.object_key is not None
                and chunk.sample_rate
                and chunk.duration_seconds is not None
            )
            if rate is not None and chunk.sample_rate != rate:
                raise PermanentError(
                    f"chunk {chunk.seq} is {chunk.sample_rate} Hz, the rest {rate} Hz"
                )
            rate = chunk.sample_rate
            samples = round(chunk.duration_seconds * chunk.sample_rate)
            pieces.append(
                _Piece(
                    chunk.seq,
                    chunk.object_key,
                    ChunkLength(chunk.text, chunk.paragraph_start, samples),
                )
            )
        chapters.append(_Chapter(item.id, item.title, pieces))
    return chapters, failed_items, failed_chunks, rate


def _segments(
    chapters: list[_Chapter], spans: list[ChapterSpan], cache: ChunkAudioCache, rate: int
) -> list[tuple[int | None, Segment]]:
    """Every stretch of the book in order, tagged with its chapter (None for chapter pauses)."""
    out: list[tuple[int | None, Segment]] = []
    cursor = 0
    for index, (chapter, span) in enumerate(zip(chapters, spans, strict=True)):
        if span.start > cursor:
            out.append((None, Segment(cursor, span.start - cursor)))  # the pause between chapters
            cursor = span.start
        for piece, chunk in zip(chapter.pieces, span.chunks, strict=True):
            at = span.start + chunk.start
            if at > cursor:
                out.append((index, Segment(cursor, at - cursor)))  # a pause inside the chapter
            out.append((index, cache.segment(at, piece, rate)))
            cursor = at + chunk.end - chunk.start
    return out


class _EncoderThread(threading.Thread):
    """Runs encoders off the main thread (FFmpeg releases the GIL): one for the book, one
    for the chapters in turn. Messages: ('open', key, tags), ('audio', array), ('close',)."""

    def __init__(
        self, *, output_store: ObjectStore, rate: int, fmt: str, bitrate_kbps: int | None
    ) -> None:
        super().__init__(daemon=True)
        self.inbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=8)
        self.output_store, self.rate, self.fmt, self.bitrate = output_store, rate, fmt, bitrate_kbps
        self.error: BaseException | None = None

    def run(self) -> None:
        encoder: StreamEncoder | None = None
        sink: Any = None
        key = ""
        while (message := self.inbox.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure so the producer never blocks
            try:
                if message[0] == "open":
                    key = message[1]
                    # Lives until the "close" message, so no with-block can hold it.
                    sink = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115
                    encoder = StreamEncoder(
                        sink, self.rate, self.fmt, bitrate_kbps=self.bitrate, metadata=message[2]
                    )
                elif message[0] == "audio" and encoder is not None:
                    encoder.write(message[1])
                elif message[0] == "close" and encoder is not None:
                    encoder.close()
                    sink.seek(0)
                    self.output_store.put_file(
                        key, sink, content_type=codec_for(self.fmt).content_type
                    )
                    sink.close()
                    encoder = None
            except BaseException as exc:  # handed to the main thread at finish()
                self.error = exc

    def send(self, *message: Any) -> None:
        self.inbox.put(message)

    def finish(self) -> None:
        self.inbox.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def _previous_files(output_store: ObjectStore, source: str) -> set[str]:
    """Files the folder's current manifest lists, if it was written for the same source.

    Another book's files in a shared folder are not ours to remove.
    """
    try:
        previous = json.loads(output_store.get(MANIFEST_KEY))
    except (NotFoundError, ValueError):
        return set()
    if previous.get("source") != source:
        return set()
    files = {previous.get("file")} | {c.get("file") for c in previous.get("chapters", [])}
    return {f for f in files if isinstance(f, str)}


def _finish_all(workers: list[_EncoderThread], failure: BaseException | None) -> None:
    """Stop every worker; raise the main thread's failure first, else a worker's."""
    errors: list[BaseException] = []
    for worker in workers:
        try:
            worker.finish()
        except BaseException as exc:
            errors.append(exc)
    if failure is None and errors:
        raise errors[0]


def assemble_job(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store: ObjectStore,
) -> AssemblyResult:
    """Master, encode and write a job's outputs, then record it done."""
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.status == JobStatus.RENDERING and not store.begin_assembly(session, job_id=job_id):
            raise RetryableError(f"job {job_id} still has chunks being rendered; try again later")
        if job.status in (JobStatus.PENDING, JobStatus.CANCELLED):
            raise InputError(f"job {job_id} is {job.status}; it cannot be assembled")
        options = dict(job.options)
        title, author, fmt, source = job.title, job.author, job.output_format, job.source_name
        chapters, failed_items, failed_chunks, rate = _read_job(session, job_id)

    codec = codec_for(fmt)
    book_key: str | None = None
    chapter_keys: list[str] = []
    mastering: Mastering | None = None
    duration = 0.0
    manifest_chapters: list[dict[str, Any]] = []
    done_items: list[tuple[uuid.UUID, str, float]] = []
    stale = _previous_files(output_store, source)
    if chapters and rate is not None:
        pauses = Pauses(
            options["pause_sentence_ms"], options["pause_paragraph_ms"], options["pause_chapter_ms"]
        )
        spans = layout([[p.length for p in c.pieces] for c in chapters], rate, pauses)
        segments = _segments(chapters, spans, ChunkAudioCache(chunk_store), rate)
        mastering = plan_mastering(
            [segment for _, segment in segments],
            rate,
            target_lufs=options["loudness_lufs"],
            ceiling_dbtp=options["true_peak_dbtp"],
        )
        duration = spans[-1].end / rate
        stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        book_key = f"{slugify(stem, fallback='book')}.{codec.extension}"
        width = max(2, len(str(len(chapters))))
        for number, (chapter, span) in enumerate(zip(chapters, spans, strict=True), start=1):
            key = f"chapters/{number:0{width}d}-{slugify(chapter.title, fallback='chapter')}.{codec.extension}"
            chapter_keys.append(key)
            seconds = (span.end - span.start) / rate
            manifest_chapters.append(
                {
                    "index": number,
                    "title": chapter.title,
                    "file": key,
                    "start": round(span.start / rate, 3),
                    "duration": round(seconds, 3),
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
            done_items.append((chapter.item_id, key, seconds))

        book = _EncoderThread(
            output_store=output_store, rate=rate, fmt=fmt, bitrate_kbps=options.get("bitrate_kbps")
        )
        parts = _EncoderThread(
            output_store=output_store, rate=rate, fmt=fmt, bitrate_kbps=options.get("bitrate_kbps")
        )
        book.start()
        parts.start()
        try:
            book.send("open", book_key, {"title": title, "album": title, "artist": author or ""})
            current: int | None = None
            for chapter_index, segment in segments:
                if segment.load is None:
                    audio = np.zeros(segment.length, np.float32)
                elif mastering.limited:
                    audio = mastering.apply(*segment.audio_and_peaks())
                else:
                    audio = mastering.apply(segment.load())  # peaks only matter to the limiter
                book.send("audio", audio)
                if chapter_index is not None and chapter_index != current:
                    if current is not None:
                        parts.send("close")
                    current = chapter_index
                    parts.send(
                        "open",
                        chapter_keys[current],
                        {
                            "title": chapters[current].title,
                            "album": title,
                            "artist": author or "",
                            "track": f"{current + 1}/{len(chapters)}",
                        },
                    )
                if chapter_index is not None:
                    parts.send("audio", audio)
            parts.send("close")
            book.send("close")
        except BaseException as failure:
            _finish_all([book, parts], failure)
            raise
        _finish_all([book, parts], None)

    manifest = {
        "job_id": str(job_id),
        "source": source,
        "title": title,
        "author": author,
        "format": fmt,
        "sample_rate": rate,
        "file_sample_rate": output_rate(fmt, rate) if rate else None,
        "duration": round(duration, 3),
        "file": book_key,
        "loudness": None
        if mastering is None
        else {
            "integrated_lufs": round(mastering.output_lufs, 2),
            "true_peak_dbtp": round(mastering.true_peak_dbtp, 2),
            "gain_db": round(mastering.gain_db, 2),
            "limited": mastering.limited,
        },
        "chapters": manifest_chapters,
        "failed_chunks": failed_chunks,
    }
    output_store.put(
        MANIFEST_KEY,
        json.dumps(manifest, indent=2, ensure_ascii=False).encode(),
        content_type="application/json",
    )
    # Files an earlier assembly of this source listed and this one does not (a chapter
    # renamed or removed since) would otherwise linger beside the new ones. When nothing
    # was produced this time, the earlier files are the only audio there is: keep them.
    if book_key is not None:
        for key in stale - {book_key, *chapter_keys}:
            output_store.delete(key)

    with transaction(factory) as session:
        for item_id, key, seconds in done_items:
            store.complete_item(session, item_id=item_id, object_key=key, duration=seconds)
        for item_id, error in failed_items:
            store.fail_item(session, item_id=item_id, error=error)
        status = store.get_job(session, job_id).status
        if status == JobStatus.ASSEMBLING:
            status = store.finish_job(session, job_id=job_id, audio_seconds=duration)
    return AssemblyResult(status, book_key, chapter_keys, duration, mastering, failed_chunks)
