"""Request bodies and uploads -> a checked Document: text, chapters, catalogue items or an
uploaded file, each refused with the field it came from named; likewise a request's cover
and lexicon."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.audio.cover import Cover, cover_from_bytes
from pipeline.errors import FieldError, InputError, JobTooLarge
from pipeline.file_names import slugify
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
from pipeline.text.lexicon import Lexicon, lexicon_from_mapping, parse_lexicon


def _paragraphs(text: str) -> tuple[str, ...]:
    return tuple(" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip())


def _source(name: str, payload: object) -> SourceFile:
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    return SourceFile(path=Path(name), text="", sha256=hashlib.sha256(raw).hexdigest())


def _check_size(field: str, chars: int, max_chars: int | None) -> None:
    """Refuse a body of text over the job cap before any work is done on it (planning
    checks again, for every input); `max_chars` None: no early check."""
    if max_chars is not None and chars > max_chars:
        raise JobTooLarge(
            field,
            f"{chars:,} characters is over the job limit of {max_chars:,} "
            f"(VOICEBATCH_JOB_MAX_CHARS); split the book into several jobs",
        )


def document_from_text(title: str, text: str, *, max_chars: int | None = None) -> ParsedSource:
    """Plain text, chapter headings found as in a .txt file."""
    _check_size("text", len(text), max_chars)
    if not any(ch.isalnum() for ch in text):
        raise FieldError("text", "has no words to read")
    document = parse_plaintext(text, default_title=title)
    if not document.chapters:
        raise FieldError("text", "has no words to read")
    return ParsedSource(_source(f"{slugify(title, fallback='text')}.txt", [title, text]), document)


def document_from_chapters(
    title: str, chapters: Sequence[tuple[str, str]], *, max_chars: int | None = None
) -> ParsedSource:
    """Chapters given one by one: each title is a heading, each text its paragraphs."""
    _check_size("chapters", sum(len(n) + len(t) for n, t in chapters), max_chars)
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
    max_chars: int | None = None,
) -> ParsedSource:
    """Catalogue entries (id, text, optional voice): one output file per entry, checked
    as the rows of a CSV file are; an error names the entry as `items[N]`."""
    fmt = catalogue or CatalogueFormat()
    if not items:
        raise FieldError("items", "is empty")
    _check_size("items", sum(len(item[1]) for item in items), max_chars)
    if len(items) > fmt.max_items:
        raise FieldError("items", f"{len(items)} entries is over the limit of {fmt.max_items}")
    # One row at a time, and the entries hashed as they are (a tuple is written as the
    # list it was): 100,000 entries are not copied twice more while they are checked.
    rows = (
        CatalogueRow(f"items[{index}]", item[0], item[1], item[2] if len(item) > 2 else None)
        for index, item in enumerate(items)
    )
    try:
        document = build_items(rows, fmt, title=title)
    except InputError as exc:
        where, _, problem = exc.message.partition(": ")
        raise FieldError(where, problem) from exc
    payload = [title, items if isinstance(items, list | tuple) else list(items)]
    return ParsedSource(_source(f"{slugify(title, fallback='catalogue')}.json", payload), document)


def document_from_upload(
    filename: str,
    data: bytes,
    *,
    keep_front_matter: bool = False,
    catalogue: CatalogueFormat | None = None,
    max_chars: int | None = None,
) -> ParsedSource:
    """An uploaded file, checked and parsed exactly as `voicebatch render` reads one
    (a .csv or .jsonl with `catalogue`'s columns). A text file over `max_chars` is
    refused before it is parsed (an EPUB's text is counted when the job is planned)."""
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
            _check_size("file", len(source.text), max_chars)
            document = parse_source(
                source, keep_front_matter=keep_front_matter, catalogue=catalogue
            )
        except JobTooLarge:
            raise
        except InputError as exc:
            raise FieldError("file", exc.message.replace(str(path), name)) from exc
    return ParsedSource(replace(source, path=Path(name)), document)


def lexicon_from_request(given: str | dict[str, str] | None) -> Lexicon | None:
    """A request's lexicon (file text or {word: replacement}); errors name the field."""
    if given is None:
        return None
    try:
        if isinstance(given, str):
            return parse_lexicon(given, name="lexicon")
        return lexicon_from_mapping(given, name="lexicon")
    except InputError as exc:
        raise FieldError("lexicon", exc.message.removeprefix("lexicon ")) from exc


def cover_from_request(data: bytes | None, field: str = "cover") -> Cover | None:
    """A request's cover image, checked; errors name `field`."""
    if data is None:
        return None
    try:
        return cover_from_bytes(data, name="the image")
    except InputError as exc:
        raise FieldError(field, exc.message.removeprefix("the image: ")) from exc
