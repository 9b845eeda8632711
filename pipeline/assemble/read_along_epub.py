"""An EPUB 3 with Media Overlays, packed: the content documents, their SMIL overlays, the
audio, the nav and package documents (EPUB 3.2, as epubcheck checks it).

Every clip is in whole milliseconds, so each overlay's `media:duration` (the sum of its
clips) and the publication's (the sum of those) add up exactly, as epubcheck wants.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import groupby
from typing import BinaryIO

ACTIVE_CLASS = "-epub-media-overlay-active"
STYLE = f"""body {{ font-family: serif; line-height: 1.5; margin: 0 5%; }}
h1 {{ font-size: 1.5em; margin: 1.5em 0 1em; }}
.{ACTIVE_CLASS} {{ background-color: #ffe9a8; }}
"""
CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="EPUB/package.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""


@dataclass(frozen=True)
class Clip:
    """One `<par>`: the text element's id, and the audio from `begin` to `end` (ms).
    Consecutive clips with the same `group` (a chunk's id) are its words, in a `<seq>`."""

    text_id: str
    begin: int
    end: int
    group: str | None = None


@dataclass(frozen=True)
class ContentDoc:
    """One chapter: its XHTML body, and its clips into one audio member (None: text only)."""

    name: str  # "ch1": ch1.xhtml, ch1.smil
    title: str
    body: str
    audio: str | None = None  # the audio member's href, under EPUB/
    clips: tuple[Clip, ...] = ()

    @property
    def duration_ms(self) -> int:
        return sum(c.end - c.begin for c in self.clips)


@dataclass(frozen=True)
class Member:
    """A file of the publication that is not generated text: audio or the cover image.
    `read` gives its bytes when it is packed (one chapter's audio in memory at a time)."""

    href: str
    media_type: str
    read: Callable[[], bytes]
    cover: bool = False


@dataclass(frozen=True)
class Publication:
    identifier: str
    title: str
    author: str | None
    language: str
    docs: tuple[ContentDoc, ...]
    members: tuple[Member, ...]


def clock(ms: int) -> str:
    """A SMIL full clock value: H:MM:SS.mmm."""
    seconds, milli = divmod(ms, 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{sec:02d}.{milli:03d}"


def _xhtml(title: str, language: str, body: str, *, nav: bool = False) -> str:
    epub_ns = ' xmlns:epub="http://www.idpf.org/2007/ops"'
    lang = escape(language)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml"{epub_ns} xml:lang="{lang}" lang="{lang}">
<head>
<meta charset="utf-8"/>
<title>{escape(title)}</title>
{"" if nav else '<link rel="stylesheet" type="text/css" href="style.css"/>'}
</head>
<body>
{body}
</body>
</html>
"""


def content_xhtml(doc: ContentDoc, language: str) -> str:
    return _xhtml(doc.title, language, f"<section>\n{doc.body}\n</section>")


def nav_xhtml(publication: Publication) -> str:
    entries = "\n".join(
        f'<li><a href="{d.name}.xhtml">{escape(d.title)}</a></li>' for d in publication.docs
    )
    body = f'<nav epub:type="toc" id="toc">\n<h1>Contents</h1>\n<ol>\n{entries}\n</ol>\n</nav>'
    return _xhtml(publication.title, publication.language, body, nav=True)


def smil(doc: ContentDoc) -> str:
    """The overlay of one content document: a `<par>` per clip, a chunk's word clips in
    a `<seq>` whose textref is the chunk's span."""
    page = f"{doc.name}.xhtml"
    audio = escape(doc.audio or "")
    lines: list[str] = []
    for group, run in groupby(doc.clips, key=lambda c: c.group):
        pars = [
            f'<par id="p-{c.text_id}"><text src="{page}#{c.text_id}"/>'
            f'<audio src="{audio}" clipBegin="{clock(c.begin)}" clipEnd="{clock(c.end)}"/></par>'
            for c in run
        ]
        if group is None:
            lines += pars
        else:
            lines.append(f'<seq id="s-{group}" epub:textref="{page}#{group}">')
            lines += pars
            lines.append("</seq>")
    inner = "\n".join(lines)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<smil xmlns="http://www.w3.org/ns/SMIL" xmlns:epub="http://www.idpf.org/2007/ops" version="3.0">
<body>
{inner}
</body>
</smil>
"""


def package_opf(publication: Publication, modified: datetime) -> str:
    """The package document: metadata (durations included), manifest, spine."""
    spoken = [d for d in publication.docs if d.clips]
    meta = [
        f'<dc:identifier id="pub-id">{escape(publication.identifier)}</dc:identifier>',
        f"<dc:title>{escape(publication.title)}</dc:title>",
        f"<dc:language>{escape(publication.language)}</dc:language>",
        f'<meta property="dcterms:modified">{modified:%Y-%m-%dT%H:%M:%SZ}</meta>',
    ]
    if publication.author:
        meta.insert(2, f"<dc:creator>{escape(publication.author)}</dc:creator>")
    meta += [
        f'<meta property="media:duration" refines="#{d.name}-overlay">{clock(d.duration_ms)}</meta>'
        for d in spoken
    ]
    total = sum(d.duration_ms for d in spoken)
    meta += [
        f'<meta property="media:duration">{clock(total)}</meta>',
        f'<meta property="media:active-class">{ACTIVE_CLASS}</meta>',
    ]
    items = [
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>',
        '<item id="style" href="style.css" media-type="text/css"/>',
    ]
    for d in publication.docs:
        overlay = f' media-overlay="{d.name}-overlay"' if d.clips else ""
        items.append(
            f'<item id="{d.name}" href="{d.name}.xhtml" '
            f'media-type="application/xhtml+xml"{overlay}/>'
        )
        if d.clips:
            items.append(
                f'<item id="{d.name}-overlay" href="{d.name}.smil" '
                'media-type="application/smil+xml"/>'
            )
    for n, m in enumerate(publication.members, start=1):
        props = ' properties="cover-image"' if m.cover else ""
        ident = "cover-image" if m.cover else f"audio-{n}"
        items.append(
            f'<item id="{ident}" href="{escape(m.href)}" media-type="{m.media_type}"{props}/>'
        )
    spine = "\n".join(f'<itemref idref="{d.name}"/>' for d in publication.docs)
    nl = "\n"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="pub-id" \
xml:lang="{escape(publication.language)}">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
{nl.join(meta)}
</metadata>
<manifest>
{nl.join(items)}
</manifest>
<spine>
{spine}
</spine>
</package>
"""


def _texts(publication: Publication, modified: datetime) -> Iterator[tuple[str, str]]:
    yield "META-INF/container.xml", CONTAINER
    yield "EPUB/package.opf", package_opf(publication, modified)
    yield "EPUB/nav.xhtml", nav_xhtml(publication)
    yield "EPUB/style.css", STYLE
    for doc in publication.docs:
        yield f"EPUB/{doc.name}.xhtml", content_xhtml(doc, publication.language)
        if doc.clips:
            yield f"EPUB/{doc.name}.smil", smil(doc)


def write_epub(publication: Publication, target: BinaryIO) -> None:
    """Pack the publication: `mimetype` first and stored, as OCF requires; the text
    compressed; audio and images stored (they do not compress)."""
    modified = datetime.now(UTC).replace(microsecond=0)
    with zipfile.ZipFile(target, "w") as epub:
        epub.writestr(
            zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED
        )
        for name, text in _texts(publication, modified):
            epub.writestr(name, text.encode(), compress_type=zipfile.ZIP_DEFLATED)
        for member in publication.members:
            epub.writestr(f"EPUB/{member.href}", member.read(), compress_type=zipfile.ZIP_STORED)
