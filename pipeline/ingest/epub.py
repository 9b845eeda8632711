"""EPUB reader (EPUB 2 and 3): the spine's documents -> chapters, titled by the book's
table of contents, with front and back matter left out unless asked for.

Chapters. Every spine document starts a chapter, and so does a table-of-contents entry
that points at a fragment inside a document (a file holding several chapters), as long as
it is no deeper in the table than the deepest entry that starts a document of its own:
in a book whose chapters are files, sections nested under them (`ch1.xhtml#s2`) stay in
their chapter and their headings are read in place; in a one-file book whose chapters are
fragments, each chapter is cut at its anchor.

Titles come from the navigation document (EPUB 3) or the NCX (EPUB 2); a document with no
entry is titled by its first heading; a document with neither continues the chapter
before it when the book has a table of contents (publishers split long chapters into
several files), else it gets a numbered title.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from pipeline.audio.cover import MAX_COVER_BYTES
from pipeline.ingest.document import Chapter, Document, Skipped
from pipeline.ingest.epub_archive import EpubArchive, EpubError, resolve_href
from pipeline.ingest.epub_matter import Page, matter_to_skip
from pipeline.ingest.epub_package import NavEntry, Package, SpineItem, read_package
from pipeline.ingest.epub_text import (
    Block,
    ContentText,
    content_text,
    document_types,
    first_image,
    mark_notes,
)

# Structural types (epub:type, landmarks, EPUB 2 guide) of documents that are not read
# by default. Dedications, epigraphs, forewords, prefaces, prologues and afterwords are
# part of the book as narrated, so they stay.
FRONT_AND_BACK_MATTER = {
    "cover", "titlepage", "title-page", "halftitlepage", "frontispiece", "copyright-page",
    "copyright", "toc", "lot", "loi", "lof", "landmarks", "page-list", "index",
    "acknowledgments", "acknowledgements", "colophon", "imprint", "imprimatur",
    "contributors", "other-credits", "credits", "errata", "bibliography", "glossary",
    "footnotes", "endnotes", "rearnotes", "notes", "seriespage", "adcard",
}  # fmt: skip


@dataclass(frozen=True)
class _Piece:
    entry: NavEntry | None
    blocks: list[Block]


def _matter(spine: SpineItem, package: Package, root: etree._Element) -> str | None:
    """What kind of front or back matter a document is ('toc', 'copyright-page',
    'non-linear'...), by any of the ways a book can say so; None for the book's body."""
    path = spine.item.path
    if path == package.nav_path:
        return "toc"
    types = document_types(root) | package.file_types.get(path, set())
    found = sorted(types & FRONT_AND_BACK_MATTER)
    if found:
        return found[0]
    return None if spine.linear else "non-linear"


def _matter_title(kind: str) -> str:
    """A title for front matter the table of contents leaves out: 'copyright-page' -> 'Copyright'."""
    names = {"toc": "Contents", "titlepage": "Title page", "non-linear": "Extra"}
    return names.get(kind) or kind.removesuffix("-page").replace("-", " ").capitalize()


def _chapter_depth(package: Package, anchors: dict[str, dict[str, int]]) -> int:
    """The deepest table-of-contents level at which an entry starts a document."""
    depths = [
        entry.depth
        for entry in package.toc
        if entry.fragment is None or anchors.get(entry.path, {}).get(entry.fragment) == 0
    ]
    return max(depths, default=0)


def _pieces(
    blocks: list[Block], anchors: dict[str, int], entries: list[NavEntry], depth: int
) -> list[_Piece]:
    if not entries:
        return [_Piece(None, blocks)]
    cuts: list[tuple[int, NavEntry]] = [(0, entries[0])]
    for entry in entries[1:]:
        start = anchors.get(entry.fragment or "")
        if entry.depth > depth or entry.fragment is None or start is None:
            continue
        if start > cuts[-1][0]:
            cuts.append((start, entry))
        # an entry at the same place as the one before (an anchor with no text between)
        # adds nothing; the first keeps the title
    ends = [start for start, _ in cuts[1:]] + [len(blocks)]
    return [
        _Piece(entry, blocks[start:end]) for (start, entry), end in zip(cuts, ends, strict=True)
    ]


def _chapter(piece: _Piece) -> tuple[str | None, tuple[str, ...], bool]:
    """(title, paragraphs, heading): a leading heading becomes the chapter's heading
    (spoken by read_titles as the title), other headings are read where they stand."""
    blocks = piece.blocks
    if blocks and blocks[0].kind == "h":
        title = piece.entry.title if piece.entry else blocks[0].text
        return title, tuple(b.text for b in blocks[1:]), True
    paragraphs = tuple(b.text for b in blocks)
    if piece.entry is not None:
        return piece.entry.title, paragraphs, False
    heading = next((b.text for b in blocks if b.kind == "h"), None)
    return heading, paragraphs, False


def _cover(
    archive: EpubArchive, package: Package, roots: dict[str, etree._Element]
) -> bytes | None:
    path = package.cover_path
    if path is None:
        # EPUB 2 books without a cover <meta>: the picture on the cover page.
        for spine in package.spine:
            where = spine.item.path
            types = package.file_types.get(where, set()) | document_types(roots[where])
            src = first_image(roots[where]) if "cover" in types else None
            if src:
                try:
                    path, _ = resolve_href(where, src)
                except EpubError:
                    return None
                break
    if path is None or path not in archive:
        return None
    try:
        return archive.read(path, limit=MAX_COVER_BYTES)
    except EpubError:
        return None  # a cover too big to tag is left out, not the book


def parse_epub(data: bytes, *, default_title: str, keep_front_matter: bool = False) -> Document:
    """Read an EPUB's bytes into a Document; EpubError (an InputError) for a book that is
    malformed, hostile or DRM-protected, before anything else happens."""
    archive = EpubArchive.open(data)
    package = read_package(archive)
    roots = {s.item.path: archive.xml(s.item.path, recover=True) for s in package.spine}
    mark_notes(roots.items())
    texts = {path: content_text(root) for path, root in roots.items()}
    depth = _chapter_depth(package, {path: text.anchors for path, text in texts.items()})
    entries: dict[str, list[NavEntry]] = {}
    for entry in package.toc:
        entries.setdefault(entry.path, []).append(entry)

    pages = [_page(s.item.path, texts, entries) for s in package.spine]
    unmarked = matter_to_skip(pages, book_title=package.title)
    chapters: list[Chapter] = []
    skipped: list[Skipped] = []
    for spine, page, reads_as in zip(package.spine, pages, unmarked, strict=True):
        path = spine.item.path
        matter = _matter(spine, package, roots[path])
        if not keep_front_matter and (matter is not None or reads_as is not None):
            reason = f"marked {matter}" if matter is not None else f"reads as {reads_as}"
            shown = page.title or (
                _matter_title(matter) if matter is not None else str(reads_as).capitalize()
            )
            skipped.append(Skipped(shown, reason, page.words))
            continue
        text = texts[path]
        for piece in _pieces(text.blocks, text.anchors, entries.get(path, []), depth):
            title, paragraphs, heading = _chapter(piece)
            if title is None and matter is not None:
                title = _matter_title(matter)
            if title is None and package.toc and chapters and paragraphs:
                last = chapters[-1]
                chapters[-1] = Chapter(last.title, last.paragraphs + paragraphs, last.heading)
                continue
            if not paragraphs and not heading:
                continue
            chapters.append(
                Chapter(title or f"Chapter {len(chapters) + 1}", paragraphs, heading=heading)
            )

    title = package.title or default_title
    author = ", ".join(package.authors) or None
    metadata = {
        **package.metadata,
        "title": title,
        "format": "epub",
        "epub_version": package.version,
    }
    if author:
        metadata["author"] = author
    return Document(
        title=title,
        chapters=tuple(chapters),
        author=author,
        metadata=metadata,
        cover=_cover(archive, package, roots),
        skipped=tuple(skipped),
    )


def _page(path: str, texts: dict[str, ContentText], entries: dict[str, list[NavEntry]]) -> Page:
    """A spine document as the front and back matter rules read it."""
    blocks = texts[path].blocks
    listed = entries.get(path)
    title = listed[0].title if listed else next((b.text for b in blocks if b.kind == "h"), None)
    return Page(title, [b.text for b in blocks], bool(listed))
