"""An EPUB content document (XHTML) as speech: headings and paragraphs, with the anchors
the table of contents points at, and everything that is not read aloud left out: footnote
markers and bodies, images, scripts, styles, maths."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from pipeline.ingest.epub_archive import EpubError, resolve_href
from pipeline.ingest.epub_package import epub_types, local

# A figure's caption goes with its picture: without the image it makes no sense aloud.
SKIPPED = {
    "figcaption", "head", "script", "style", "img", "image", "svg", "math", "audio", "video", "object",
    "embed", "iframe", "canvas", "noscript", "template", "picture", "map", "source", "track",
    "rt", "rp", "button", "input", "select", "textarea",
}  # fmt: skip
BLOCKS = {
    "body", "section", "article", "aside", "header", "footer", "main", "nav", "div", "p",
    "blockquote", "pre", "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody",
    "tfoot", "tr", "td", "th", "caption", "figure", "figcaption", "hr", "address", "center",
    "hgroup", "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip
NOTE_BLOCKS = {"p", "li", "aside", "div", "dd", "dt"}
HEADINGS = {f"h{n}": n for n in range(1, 7)}
NOTE_TYPES = {"footnote", "endnote", "rearnote", "note", "footnotes", "endnotes", "rearnotes"}
# A footnote marker's text: 1, [12], (3), *, †, a. Plain <sup>2</sup> is read as a marker
# too: in books it is far more often an unlinked note number than an exponent.
_MARK = re.compile(r"^[\[\(]?(\d{1,4}|[*†‡§¶#]{1,3}|[a-z])[\]\)]?[.,]?$")
_NOTE_ATTR = "{urn:voicebatch}note"


@dataclass(frozen=True)
class Block:
    kind: str  # "h" (a heading) or "p"
    text: str
    level: int = 0  # 1-6 for headings


@dataclass
class ContentText:
    """A content document's speech: blocks in order, and where each id'd element starts
    (the index of the first block at or after it), for tables of contents that point at
    a fragment."""

    blocks: list[Block] = field(default_factory=list)
    anchors: dict[str, int] = field(default_factory=dict)


def _text(element: etree._Element) -> str:
    return " ".join("".join(element.itertext()).split())


def _is_marker(element: etree._Element) -> bool:
    """A footnote reference: epub:type noteref, or a <sup>/fragment link that is only a mark."""
    name = local(element.tag)
    if "noteref" in epub_types(element):
        return True
    if name == "sup":
        has_link = any(local(a.tag) == "a" and a.get("href") for a in element.iter())
        return has_link or bool(_MARK.match(_text(element)))
    if name == "a":
        href = element.get("href") or ""
        return "#" in href and bool(_MARK.match(_text(element)))
    return False


def _starts_block(target: etree._Element) -> etree._Element | None:
    """The note block an inline anchor opens (`<p><a id="n1">1</a> The note.</p>`), or None
    when text comes before it: then it is the marker in the running text, not the note."""
    node = target
    while True:
        parent = node.getparent()
        if parent is None:
            return None
        if (parent.text or "").strip():
            return None
        sibling = node.getprevious()
        while sibling is not None:
            if _text(sibling) or (sibling.tail or "").strip():
                return None
            sibling = sibling.getprevious()
        if local(parent.tag) in NOTE_BLOCKS:
            return parent
        if local(parent.tag) in BLOCKS:
            return None
        node = parent


def mark_notes(documents: Iterable[tuple[str, etree._Element]]) -> None:
    """Mark the footnote bodies that markers point at, in any of the book's documents, so
    that the text walk drops them (EPUB 2 books have no epub:type to say what a note is)."""
    docs = dict(documents)
    targets: dict[str, set[str]] = {}
    for path, root in docs.items():
        for element in root.iter():
            if not isinstance(element.tag, str) or not _is_marker(element):
                continue
            for link in element.iter():
                href = link.get("href") if local(link.tag) == "a" else None
                if not href:
                    continue
                try:
                    target_path, fragment = resolve_href(path, href)
                except EpubError:
                    continue  # a link out of the book is not a note; the reader ignores it
                if fragment:
                    targets.setdefault(target_path, set()).add(fragment)
    for path, ids in targets.items():
        root = docs.get(path)
        if root is None:
            continue
        for element in root.iter():
            if not isinstance(element.tag, str) or element.get("id") not in ids:
                continue
            # Marker and note often link to each other; the note is the one that opens
            # its block, the marker sits in running text.
            name = local(element.tag)
            note = element if name in NOTE_BLOCKS else _starts_block(element)
            if note is not None and local(note.tag) not in ("body", "section"):
                note.set(_NOTE_ATTR, "1")


class _Walker:
    def __init__(self) -> None:
        self.out = ContentText()
        self.buffer: list[str] = []
        self.heading = 0

    def flush(self) -> None:
        text = " ".join("".join(self.buffer).split())
        self.buffer = []
        if text and any(ch.isalnum() for ch in text):
            kind = "h" if self.heading else "p"
            self.out.blocks.append(Block(kind, text, self.heading))

    def walk(self, element: etree._Element) -> None:
        name = local(element.tag)
        skipped = (
            not name
            or name in SKIPPED
            or element.get(_NOTE_ATTR) == "1"
            or element.get("hidden") is not None  # not shown, so not read (landmarks)
            or bool(epub_types(element) & NOTE_TYPES)
            or _is_marker(element)
        )
        if not skipped:
            ident = element.get("id")
            if ident:
                self.out.anchors.setdefault(ident, len(self.out.blocks))
            block = name in BLOCKS
            level = HEADINGS.get(name, 0)
            if block:
                self.flush()
            outer, self.heading = self.heading, level or self.heading
            if name == "br":
                self.buffer.append(" ")
            self.buffer.append(element.text or "")
            for child in element:
                self.walk(child)
            if block:
                self.flush()
            self.heading = outer
        self.buffer.append(element.tail or "")


def content_text(root: etree._Element) -> ContentText:
    """The speech in one content document."""
    body = next((e for e in root.iter() if local(e.tag) == "body"), root)
    walker = _Walker()
    walker.walk(body)
    walker.flush()
    walker.out.anchors.setdefault("", 0)
    return walker.out


def document_types(root: etree._Element) -> set[str]:
    """The structural types a document gives itself (epub:type on html, body, or the
    section that makes up its body): copyright-page, toc, chapter..."""
    types = set(epub_types(root))
    body = next((e for e in root.iter() if local(e.tag) == "body"), None)
    if body is not None:
        types |= epub_types(body)
        sections = [e for e in body if local(e.tag) in ("section", "div", "article", "nav")]
        if sections:
            types |= epub_types(sections[0])
    return types


def first_image(root: etree._Element) -> str | None:
    """The src of a document's first image (a cover page's picture)."""
    for element in root.iter():
        name = local(element.tag)
        if name == "img" and element.get("src"):
            return element.get("src")
        if name == "image":
            href = element.get("{http://www.w3.org/1999/xlink}href") or element.get("href")
            if href:
                return href
    return None
