"""Readers that turn input files into a Document, and the checks every input passes first."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError
from pipeline.ingest.catalogue import CATALOGUE_READERS, CatalogueFormat
from pipeline.ingest.document import Chapter, Document
from pipeline.ingest.epub import parse_epub
from pipeline.ingest.markdown import parse_markdown
from pipeline.ingest.plaintext import parse_plaintext

__all__ = [
    "CatalogueFormat",
    "Chapter",
    "Document",
    "ParsedSource",
    "SourceFile",
    "load_source",
    "parse_source",
    "read_document",
]


@dataclass(frozen=True)
class Reader:
    """How one input format is read: from decoded text (txt, md) or from the file's bytes
    (EPUB, a zip archive)."""

    parse: Callable[[SourceFile, bool], Document]  # (source, keep_front_matter)
    binary: bool = False


@dataclass(frozen=True)
class SourceFile:
    """An input file read and checked: its name, content hash (of the file's bytes) and
    content: decoded text for text formats, the bytes for binary ones (EPUB)."""

    path: Path
    text: str
    sha256: str
    data: bytes = field(default=b"", repr=False)

    @property
    def reader_suffix(self) -> str:
        return self.path.suffix.lower()


@dataclass(frozen=True)
class ParsedSource:
    """A checked input file and the Document read from it, parsed once."""

    source: SourceFile
    document: Document


def _text_reader(parse: Callable[..., Document]) -> Reader:
    return Reader(lambda source, _keep: parse(source.text, default_title=source.path.stem))


def _read_epub(source: SourceFile, keep_front_matter: bool) -> Document:
    return parse_epub(
        source.data, default_title=source.path.stem, keep_front_matter=keep_front_matter
    )


READERS: dict[str, Reader] = {
    ".txt": _text_reader(parse_plaintext),
    ".text": _text_reader(parse_plaintext),
    ".md": _text_reader(parse_markdown),
    ".markdown": _text_reader(parse_markdown),
    ".epub": Reader(_read_epub, binary=True),
}
MAX_INPUT_BYTES = 256 * 1024 * 1024


def load_source(path: Path) -> SourceFile:
    """Read an input file, refusing anything that is not a known format: non-empty UTF-8
    text, or for a binary format (EPUB) its bytes, which its reader checks."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a text file")
    if suffix not in READERS and suffix not in CATALOGUE_READERS:
        known = ", ".join(sorted([*READERS, *CATALOGUE_READERS]))
        raise InputError(
            f"{path}: unsupported input format '{suffix or '(none)'}' (supported: {known})"
        )
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise InputError(f"{path}: {size} bytes is over the {MAX_INPUT_BYTES} byte input limit")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from exc
    sha256 = hashlib.sha256(raw).hexdigest()
    if suffix in READERS and READERS[suffix].binary:
        if not raw:
            raise InputError(f"{path}: is empty")
        return SourceFile(path=path, text="", sha256=sha256, data=raw)
    if b"\x00" in raw[:65536]:
        raise InputError(f"{path}: looks like a binary file (it contains NUL bytes), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert it with iconv -t UTF-8"
        ) from exc
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not any(ch.isalnum() for ch in text):
        raise InputError(f"{path}: is empty (no words to read)")
    return SourceFile(path=path, text=text, sha256=sha256)


def parse_source(
    source: SourceFile,
    *,
    keep_front_matter: bool = False,
    catalogue: CatalogueFormat | None = None,
) -> Document:
    """Parse a checked source into a Document; a document with nothing to read is an error.

    `keep_front_matter` keeps what an EPUB marks as front or back matter (cover, title
    page, copyright, contents, index...); text formats have none. CSV and JSONL files
    are catalogues, read with `catalogue`'s columns and limits (the defaults when None);
    their errors name the file and the line.
    """
    if source.reader_suffix in CATALOGUE_READERS:
        parse = CATALOGUE_READERS[source.reader_suffix]
        try:
            return parse(source.text, catalogue or CatalogueFormat(), title=source.path.stem)
        except InputError as exc:
            raise InputError(f"{source.path}: {exc.message}") from exc
    reader = READERS[source.reader_suffix]
    try:
        document = reader.parse(source, keep_front_matter)
    except InputError as exc:
        if exc.message.startswith(f"{source.path}:"):
            raise
        raise InputError(f"{source.path}: {exc.message}") from exc
    if not document.chapters:
        raise InputError(f"{source.path}: has no text to speak (only markup, code or symbols)")
    return document


def read_document(
    path: Path, *, keep_front_matter: bool = False, catalogue: CatalogueFormat | None = None
) -> Document:
    """load_source + parse_source."""
    return parse_source(load_source(path), keep_front_matter=keep_front_matter, catalogue=catalogue)
