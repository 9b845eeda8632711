"""Per-item assembly: one chapter's or catalogue item's chunks, mastered to the loudness
target, into its file. Run exactly once per item however workers interleave."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.chapters import AssembledChapter, Loudness
from pipeline.assemble.chunk_audio import ChunkAudioCache, ChunkPiece
from pipeline.assemble.deliverables import Deliverables
from pipeline.assemble.keys import item_key
from pipeline.assemble.timeline import finished, timeline_segments
from pipeline.assemble.writer import write_stream
from pipeline.audio.master import (
    Mastering,
    Segment,
    plan_mastering,
)
from pipeline.audio.stitch import ChunkLength, Pauses, layout
from pipeline.errors import PermanentError
from pipeline.stages import stage
from pipeline.state import scoped, store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, Item, ItemStatus, Job, JobStatus
from pipeline.storage.base import ObjectStore


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


def item_pauses(options: dict[str, Any]) -> Pauses:
    return Pauses(
        options["pause_sentence_ms"],
        options["pause_paragraph_ms"],
        options["pause_chapter_ms"],
        options.get("head_silence_ms", 0),
        options.get("tail_silence_ms", 0),
    )


def chunk_pieces(item: Item, chunks: Any, rate: int | None) -> tuple[list[ChunkPiece], int]:
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


def missing_chunks(item: Item, chunks: Any) -> list[dict[str, Any]]:
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


def master_segments(segments: list[Segment], rate: int, deliverables: Deliverables) -> Mastering:
    """Plan one chapter's (or item's) mastering to the job's target."""
    target = deliverables.target
    with stage("master.measure"):
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
    owner: str | None = None,
) -> ItemAssembly:
    """Master and encode one claimed item (chapter or catalogue entry) into its file.

    Only an item in `assembling` (claimed by store.claim_ready_items) is worked on; any
    other state means someone already did it, and nothing changes. An item with chunks
    that could not be rendered is recorded failed, with no file. `rewrite` writes a done
    item's file again (its output folder lost it) without changing its state. With
    `owner`, the item is recorded only while that assembler holds its lease.
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
        items_total = scoped.item_count(session, job_id=job.id)  # not every item's row
        meta = item_meta_for(job, item, items_total, deliverables)
        # A book's chapters always get mastered (the book applies it); their own files
        # only when asked for. Catalogue items are files by nature.
        key = (
            item_key(job, item, items_total)
            if job.kind == "catalogue" or deliverables.chapter_files
            else None
        )
        chunks = store.item_chunks(session, item_id=item_id)
        missing = missing_chunks(item, chunks)
        if missing:
            store.fail_item(
                session,
                item_id=item_id,
                error=f"{len(missing)} of {len(chunks)} chunks not rendered",
                owner=owner,
            )
            return ItemAssembly(item_id, ItemStatus.FAILED)
        pieces, rate = chunk_pieces(item, chunks, None)

    (span,) = layout([[p.length for p in pieces]], rate, item_pauses(options))
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
            session,
            item_id=item_id,
            object_key=key,
            duration=duration,
            mastering=asdict(mastering),
            owner=owner,
        )
    return ItemAssembly(item_id, ItemStatus.DONE, key, duration)
