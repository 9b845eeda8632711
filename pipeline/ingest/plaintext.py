"""Plain-text reader: paragraphs split on blank lines, chapters on 'Chapter 3' style lines."""

from __future__ import annotations

import re

from pipeline.ingest.document import Chapter, Document

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty"
)
# A heading line: 'Chapter 3', 'CHAPTER III.', 'Chapter Twenty-One: The Storm', 'Prologue'.
_CHAPTER_LINE = re.compile(
    rf"""^\s*(?:
        (?:chapter|part|book)\s+(?:\d+|[ivxlcdm]+|(?:{_NUMBER_WORDS})(?:[-\s](?:{_NUMBER_WORDS}))?)\b
        [^\n]{{0,80}}
      | (?:prologue|epilogue|preface|introduction|afterword)\b[^\n]{{0,60}}
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
# A line of symbols only ('* * *', '----') separates scenes: a paragraph break, not speech.
_SCENE_BREAK = re.compile(r"^\s*[\W_]+\s*$")


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by blank lines; hard-wrapped lines inside one are joined."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines()]
        lines = [line for line in lines if line and not _SCENE_BREAK.match(line)]
        if lines:
            paragraphs.append(" ".join(lines))
    return paragraphs


def is_chapter_heading(paragraph: str) -> bool:
    return len(paragraph) <= 100 and bool(_CHAPTER_LINE.match(paragraph))


def parse_plaintext(text: str, *, default_title: str) -> Document:
    """Parse plain text. A text with no chapter headings is one chapter named default_title."""
    chapters: list[Chapter] = []
    title: str | None = None
    body: list[str] = []
    preamble: list[str] = []

    def flush() -> None:
        if title is None:
            preamble.extend(body)
        elif body:
            chapters.append(Chapter(title=title, paragraphs=tuple(body)))
        else:
            # A heading with nothing under it still marks a chapter, read as its title.
            chapters.append(Chapter(title=title, paragraphs=(title,)))

    for paragraph in split_paragraphs(text):
        if is_chapter_heading(paragraph):
            flush()
            title, body = paragraph.rstrip(".:"), []
        else:
            body.append(paragraph)
    flush()

    if preamble:
        # Text before the first heading (a title page, a dedication) is read first.
        chapters.insert(0, Chapter(title=default_title, paragraphs=tuple(preamble)))
    return Document(title=default_title, chapters=tuple(chapters))
