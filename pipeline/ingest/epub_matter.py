"""Front and back matter in EPUBs that do not say what their pages are.

Most EPUBs in the wild are conversions: no epub:type, no landmarks, no guide. Their title
page, copyright notice, contents page and "also by" list would be read aloud as if they
were the book. These rules recognise such pages by what they say, and only where front
or back matter stands: before the book's first chapter, or in the run of pages after its
last. Dedications, epigraphs, forewords, prefaces, prologues, introductions, epilogues
and afterwords are part of the book as narrated and are never skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FRONT = ("title page", "copyright notice", "table of contents", "list of other books")
BACK = ("index", "about the author", "list of other books")

_KEEP = re.compile(
    r"^(dedication|epigraph|foreword|preface|prologue|introduction|epilogue|afterword)\b", re.I
)
_CONTENTS = re.compile(r"^(table of )?contents$", re.I)
_OTHER_BOOKS = re.compile(
    r"^(also by|other (books|titles|works|novels) by|by the same author|books by|"
    r"more (books |titles )?(by|from))\b",
    re.I,
)
_ABOUT = re.compile(r"^about the (author|authors|illustrator|translator)s?$", re.I)
_INDEX = re.compile(r"^index$", re.I)
_COPYRIGHT = re.compile(r"©|\(c\) ?\d{4}|\bcopyright\b|all rights reserved|\bisbn\b", re.I)
_PAGE_REFS = re.compile(r"\d+(\s*[-–]\s*\d+)?(\s*,\s*\d+(\s*[-–]\s*\d+)?)*\.?$")
COPYRIGHT_MAX_WORDS = 400  # a longer page that mentions copyright is prose about it
TITLE_PAGE_MAX_WORDS = 40


@dataclass(frozen=True)
class Page:
    """A spine document as these rules see it: its title (table of contents entry or first
    heading), its blocks of text, and whether the table of contents lists it."""

    title: str | None
    blocks: Sequence[str]
    in_toc: bool

    @property
    def words(self) -> int:
        return sum(len(b.split()) for b in self.blocks)


def reads_as(page: Page, *, book_title: str | None, toc_titles: set[str]) -> str | None:
    """What kind of front or back matter the page reads as (one of FRONT or BACK), or None."""
    heading = (page.title or (page.blocks[0] if page.blocks else "")).strip().rstrip(".:")
    if _KEEP.match(heading):
        return None
    if _CONTENTS.match(heading):
        return "table of contents"
    if _OTHER_BOOKS.match(heading):
        return "list of other books"
    if _INDEX.match(heading):
        return "index"
    if _ABOUT.match(heading):
        return "about the author"
    if heading.lower().startswith("copyright"):
        return "copyright notice"
    if heading.lower() in ("title page", "title"):
        return "title page"
    if page.in_toc:
        return None  # what a listed page says is the book's: only its title counts
    text = " ".join(page.blocks)
    if _COPYRIGHT.search(text) and page.words <= COPYRIGHT_MAX_WORDS:
        return "copyright notice"
    if book_title and page.words <= TITLE_PAGE_MAX_WORDS and book_title.lower() in text.lower():
        return "title page"
    lines = [b.strip() for b in page.blocks[1:] if b.strip()]
    if len(lines) >= 10 and sum(bool(_PAGE_REFS.search(b)) for b in lines) >= 0.6 * len(lines):
        return "index"
    titles = {t.lower() for t in toc_titles}
    if len(lines) >= 3 and sum(b.lower() in titles for b in lines) >= 0.6 * len(lines):
        return "table of contents"
    return None


def matter_to_skip(pages: Sequence[Page], *, book_title: str | None) -> list[str | None]:
    """Per page, the kind of matter to leave out, or None to read it.

    Front matter is looked for only before the first page the table of contents lists
    that does not itself read as front matter (the first page reading as the book when
    there is no table of contents); back matter only in the run of pages at the end that
    all read as back matter."""
    toc_titles = {p.title for p in pages if p.in_toc and p.title}
    kinds = [reads_as(p, book_title=book_title, toc_titles=toc_titles) for p in pages]
    has_toc = any(p.in_toc for p in pages)
    body = next(
        (
            i
            for i, (page, kind) in enumerate(zip(pages, kinds, strict=True))
            if kind not in FRONT and (page.in_toc or not has_toc)
        ),
        len(pages),
    )
    back = len(pages)
    while back > body and kinds[back - 1] in BACK:
        back -= 1
    return [
        kind if (i < body and kind in FRONT) or (i >= back and kind in BACK) else None
        for i, kind in enumerate(kinds)
    ]
