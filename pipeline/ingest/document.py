"""What every reader produces: a Document of chapters, each a list of paragraphs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Chapter:
    """One chapter (or catalogue item): a title and its paragraphs of plain text.

    `heading` is True when the title is a heading that stands in the text (and so may be
    read aloud), False when it was made up (a file name, the book's title).
    Catalogue items also carry their id, their own voice (None: the job's) and where
    they were read from ("line 12", "items[11]"), which error messages name.
    """

    title: str
    paragraphs: tuple[str, ...]
    heading: bool = False
    item_id: str | None = None
    voice: str | None = None
    where: str | None = None

    def spoken_paragraphs(self, *, read_titles: bool) -> tuple[str, ...]:
        """The paragraphs read aloud, in order: the heading first when it is read.

        A heading is read when `read_titles` asks for it, and always when the chapter is
        nothing but its heading (an EPUB's part page): the one rule for planning,
        submitting and the early input check alike.
        """
        if self.reads_heading(read_titles=read_titles):
            return (self.title, *self.paragraphs)
        return self.paragraphs

    def reads_heading(self, *, read_titles: bool) -> bool:
        """Whether `spoken_paragraphs` starts with the heading."""
        return self.heading and (read_titles or not self.paragraphs)


@dataclass(frozen=True)
class Skipped:
    """A part of the input that is not read aloud, and why (`voicebatch inspect` shows it)."""

    title: str
    reason: str
    words: int


@dataclass(frozen=True)
class Document:
    """A parsed input: book-level metadata and its chapters in reading order.

    `kind` is "book" (chapters that also make one whole file) or "catalogue" (items,
    each a file of its own)."""

    title: str
    chapters: tuple[Chapter, ...]
    author: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # The cover image the book carries (an EPUB's), as found: document_cover() checks it.
    cover: bytes | None = field(default=None, repr=False)
    kind: str = "book"
    skipped: tuple[Skipped, ...] = ()  # front and back matter left out, in reading order

    @property
    def word_count(self) -> int:
        return sum(len(p.split()) for c in self.chapters for p in c.paragraphs)
