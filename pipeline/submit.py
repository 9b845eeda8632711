"""Submitting jobs from requests (distributed mode): text, chapters, catalogue items or an
uploaded file -> a checked Document -> one job in one transaction -> chunk ids to publish.

Everything here is checked before the job exists; a request that fails any check leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble import slugify
from pipeline.audio.cover import Cover
from pipeline.config import Settings
from pipeline.engines import EngineInfo
from pipeline.errors import InputError
from pipeline.ingest import (
    CatalogueFormat,
    Chapter,
    Document,
    ParsedSource,
    SourceFile,
    load_source,
    parse_source,
)
from pipeline.ingest.catalogue import CatalogueRow, build_items
from pipeline.ingest.plaintext import parse_plaintext
from pipeline.plan import build_spec, job_lexicon
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import Chunk, Job, JobStatus
from pipeline.storage import ObjectStore
from pipeline.text.lexicon import Lexicon
from pipeline.text.segment import segment_paragraphs


class FieldError(InputError):
    """A request field is invalid; `field` names it the way the request spelled it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _paragraphs(text: str) -> tuple[str, ...]:
    return tuple(" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip())


def _source(name: str, payload: object) -> SourceFile:
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    return SourceFile(path=Path(name), text="", sha256=hashlib.sha256(raw).hexdigest())


def _speakable(text: str, max_chars: int) -> bool:
    return next(segment_paragraphs(list(_paragraphs(text)), max_chars), None) is not None


def document_from_text(title: str, text: str) -> ParsedSource:
    """Plain text, chapter headings found as in a .txt file."""
    if not any(ch.isalnum() for ch in text):
        raise FieldError("text", "has no words to read")
    document = parse_plaintext(text, default_title=title)
    if not document.chapters:
        raise FieldError("text", "has no words to read")
    return ParsedSource(_source(f"{slugify(title, fallback='text')}.txt", [title, text]), document)


def document_from_chapters(title: str, chapters: Sequence[tuple[str, str]]) -> ParsedSource:
    """Chapters given one by one: each title is a heading, each text its paragraphs."""
    out = []
    for index, (name, text) in enumerate(chapters):
        if not name.strip():
            raise FieldError(f"chapters[{index}].title", "is empty")
        paragraphs = _paragraphs(text)
        if not any(ch.isalnum() for p in paragraphs for ch in p):
            raise FieldError(f"chapters[{index}].text", "has no words to read")
        out.append(Chapter(title=" ".join(name.split()), paragraphs=paragraphs, heading=True))
    if not out:
        raise FieldError("chapters", "is empty")
    document = Document(title=title, chapters=tuple(out))
    return ParsedSource(
        _source(f"{slugify(title, fallback='book')}.json", [title, list(chapters)]), document
    )


def document_from_items(
    title: str,
    items: Sequence[tuple[str, str] | tuple[str, str, str | None]],
    *,
    catalogue: CatalogueFormat | None = None,
) -> ParsedSource:
    """Catalogue entries (id, text, optional voice): one output file per entry, checked
    as the rows of a CSV file are; an error names the entry as `items[N]`."""
    fmt = catalogue or CatalogueFormat()
    if not items:
        raise FieldError("items", "is empty")
    if len(items) > fmt.max_items:
        raise FieldError("items", f"{len(items)} entries is over the limit of {fmt.max_items}")
    rows = [
        CatalogueRow(f"items[{index}]", item[0], item[1], item[2] if len(item) > 2 else None)
        for index, item in enumerate(items)
    ]
    try:
        document = build_items(rows, fmt, title=title)
    except InputError as exc:
        where, _, problem = exc.message.partition(": ")
        raise FieldError(where, problem) from exc
    payload = [title, [list(item) for item in items]]
    return ParsedSource(_source(f"{slugify(title, fallback='catalogue')}.json", payload), document)


def document_from_upload(
    filename: str,
    data: bytes,
    *,
    keep_front_matter: bool = False,
    catalogue: CatalogueFormat | None = None,
) -> ParsedSource:
    """An uploaded file, checked and parsed exactly as `voicebatch render` reads one
    (a .csv or .jsonl with `catalogue`'s columns)."""
    name = Path(filename.replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        raise FieldError("file", "has no file name")
    if len(name.encode()) > 255 or any(ord(ch) < 32 for ch in name):
        raise FieldError("file", "the file name is too long or has control characters")
    with tempfile.TemporaryDirectory(prefix="voicebatch-upload-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            source = load_source(path)
            document = parse_source(
                source, keep_front_matter=keep_front_matter, catalogue=catalogue
            )
        except InputError as exc:
            raise FieldError("file", exc.message.replace(str(path), name)) from exc
    return ParsedSource(replace(source, path=Path(name)), document)


@dataclass(frozen=True)
class SubmittedJob:
    job_id: uuid.UUID
    created: bool  # False: an earlier submit with the same Idempotency-Key made it
    status: JobStatus
    chunk_groups: list[list[uuid.UUID]]  # chunk ids to publish, one render message each


def chunk_groups(
    session: Session, *, job_id: uuid.UUID, size: int, pending_only: bool = True
) -> list[list[uuid.UUID]]:
    """The job's chunk ids in reading order, `size` to a message."""
    query = select(Chunk.id).where(Chunk.job_id == job_id).order_by(Chunk.seq)
    if pending_only:
        query = query.where(Chunk.status == "pending")
    ids = list(session.scalars(query))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _replay(
    session: Session, earlier: Job, parsed: ParsedSource, settings: Settings
) -> SubmittedJob:
    """The job an earlier submit with this Idempotency-Key made. Its chunks still waiting
    are handed back for publishing again (the first try may have lost some messages;
    a duplicate message changes nothing)."""
    if earlier.source_sha256 != parsed.source.sha256:
        raise FieldError(
            "Idempotency-Key", "was already used for a different request; use a new key"
        )
    groups = (
        []
        if earlier.status.final
        else chunk_groups(session, job_id=earlier.id, size=settings.task_chunks)
    )
    return SubmittedJob(earlier.id, False, earlier.status, groups)


def submit_job(
    factory: sessionmaker[Session],
    parsed: ParsedSource,
    *,
    engine: EngineInfo,
    settings: Settings,
    kind: str,
    owner_id: uuid.UUID,
    idempotency_key: str | None,
    output_base: str,
    cover: Cover | None = None,
    folder: Callable[[str], ObjectStore] | None = None,
    lexicon: Lexicon | None = None,
) -> SubmittedJob:
    """Create the job (or find the one this Idempotency-Key made) and its chunk groups.

    A cover is written into the job's output folder (`folder(output_uri)`) before the
    job exists, since the assemble workers read it from there; if the job is not
    created, the cover is removed again.
    """
    max_chars = min(settings.chunk_max_chars, engine.max_chunk_chars)
    for index, chapter in enumerate(parsed.document.chapters):
        spoken = list(chapter.paragraphs)
        if chapter.heading and (settings.read_titles or not spoken):
            # as build_spec reads it: a heading-only chapter (an EPUB's part page) is its heading
            spoken.insert(0, chapter.title)
        if not _speakable("\n\n".join(spoken), max_chars):
            where = "items" if kind == "catalogue" else "chapters"
            raise FieldError(f"{where}[{index}]", "has no text to speak")
    if idempotency_key is not None:
        with transaction(factory) as session:
            earlier = store.find_idempotent_job(session, owner_id=owner_id, key=idempotency_key)
            if earlier is not None:
                return _replay(session, earlier, parsed, settings)
    job_id = uuid.uuid4()
    output_uri = f"{output_base.rstrip('/')}/jobs/{job_id}"
    chosen_lexicon = job_lexicon(settings, lexicon)
    try:
        spec = build_spec(
            parsed.document,
            parsed.source,
            engine=engine,
            settings=settings,
            output_uri=output_uri,
            kind=kind,
            cover=cover,
            lexicon=chosen_lexicon,
        )
    except InputError as exc:
        if isinstance(exc, FieldError) or kind != "catalogue":
            raise
        # An item's file name: name the entry (JSON items) or the uploaded file.
        where, _, problem = exc.message.partition(": ")
        if where.startswith("items["):
            raise FieldError(f"{where}.id", problem) from exc
        raise FieldError("file", exc.message) from exc
    spec = replace(spec, owner_id=owner_id, idempotency_key=idempotency_key)
    cover_folder = None
    if cover is not None:
        if folder is None:
            raise ValueError("submit_job needs `folder` to store a cover")
        cover_folder = folder(output_uri)
        cover_folder.put(cover.key, cover.data, content_type=cover.mime_type)
    try:
        with transaction(factory) as session:
            store.create_job(session, spec=spec, job_id=job_id)
            groups = chunk_groups(session, job_id=job_id, size=settings.task_chunks)
    except BaseException as exc:
        if cover_folder is not None and cover is not None:
            cover_folder.delete(cover.key)  # no job: nothing of it is left behind
        if not isinstance(exc, IntegrityError) or idempotency_key is None:
            raise
        # The same key, submitted twice at the same moment: the first one won.
        with transaction(factory) as session:
            earlier = store.find_idempotent_job(session, owner_id=owner_id, key=idempotency_key)
            if earlier is None:
                raise
            return _replay(session, earlier, parsed, settings)
    return SubmittedJob(job_id, True, JobStatus.PENDING, groups)
