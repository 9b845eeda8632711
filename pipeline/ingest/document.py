"""What every reader produces: a Document of chapters, each a list of paragraphs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Chapter:
    """One chapter (or catalogue item): a title and its paragraphs of plain text.

    `heading` is True when the title is a heading that stands in the text (and so may be
    read aloud), False when it was made up (a file name, the book's title).
    """

    title: str
    paragraphs: tuple[str, ...]
    heading: bool = False


@dataclass(frozen=True)
class Document:
    """A parsed input: book-level metadata and its chapters in reading order."""

    title: str
    chapters: tuple[Chapter, ...]
    author: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # The cover image the book carries (an EPUB's), as found: document_cover() checks it.
    cover: bytes | None = field(default=None, repr=False)

    @property
    def word_count(self) -> int:
        return sum(len(p.split()) for c in self.chapters for p in c.paragraphs)
