"""The read-along EPUB of a submitted job (distributed mode): the book's written text,
stored with the job when it is submitted, and the EPUB the finalizer builds from it.

Embedded mode builds the EPUB from the Document it has just parsed (pipeline.runner).
A worker never sees the upload: the API parses it and the job's rows hold only what is
spoken. So a job that asks for a read-along gets its Document as it was written (titles,
paragraphs, metadata; no cover, the folder has its own) beside its files, at
`SOURCE_KEY`, written before the job's row exists and removed if the job is not created
(pipeline.plan.submit). The finalizer reads it back, under its finalization lease,
after QA's results are in the timing files, and before the job is marked finished.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from pipeline.assemble.keys import SOURCE_KEY
from pipeline.assemble.manifest import read_manifest
from pipeline.assemble.read_along import write_read_along
from pipeline.errors import InputError, NotFoundError
from pipeline.ingest.document import Chapter, Document
from pipeline.storage.base import ObjectStore

_FORMAT = 1


def document_json(document: Document) -> bytes:
    """What the read-along needs of a Document, gzipped JSON."""
    record: dict[str, Any] = {
        "format": _FORMAT,
        "title": document.title,
        "author": document.author,
        "metadata": dict(document.metadata),
        "kind": document.kind,
        "chapters": [
            {"title": c.title, "paragraphs": list(c.paragraphs), "heading": c.heading}
            for c in document.chapters
        ],
    }
    return gzip.compress(json.dumps(record, ensure_ascii=False).encode(), mtime=0)


def document_from_json(data: bytes) -> Document:
    """The Document `document_json` stored."""
    record = json.loads(gzip.decompress(data))
    if record.get("format") != _FORMAT:
        raise InputError(f"{SOURCE_KEY}: unknown format {record.get('format')!r}")
    return Document(
        title=str(record["title"]),
        author=record.get("author"),
        metadata={str(k): str(v) for k, v in (record.get("metadata") or {}).items()},
        kind=str(record.get("kind") or "book"),
        chapters=tuple(
            Chapter(str(c["title"]), tuple(c["paragraphs"]), bool(c.get("heading")))
            for c in record["chapters"]
        ),
    )


def store_source(folder: ObjectStore, document: Document) -> None:
    """Keep the written text for the job's read-along EPUB in its folder."""
    folder.put(SOURCE_KEY, document_json(document), content_type="application/gzip")


def write_job_read_along(folder: ObjectStore, *, where: str) -> str | None:
    """Write the read-along EPUB of a finished job's folder (the store beneath the
    write-once view: a run again after a crash replaces it); its key, or None when the
    job produced no chapters (all of them failed: nothing to read along with)."""
    manifest = read_manifest(folder)
    if manifest is None or not manifest.get("chapters"):
        return None
    try:
        stored = folder.get(SOURCE_KEY)
    except NotFoundError as exc:
        raise InputError(f"{where}: its text for the read-along EPUB is missing") from exc
    return write_read_along(folder, document_from_json(stored), where=where)
