"""Plain-text reader: paragraphs split on blank lines, chapters on 'Chapter 3' style lines."""

from __future__ import annotations

import re

from pipeline.ingest.document import Chapter, Document

_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_NUMBER_WORD = rf"(?:(?:{_TENS})(?:[-\s](?:{_UNITS}))?|{_TEENS}|{_UNITS}|(?:one\s)?hundred)"
_ROMAN = r"(?=[MDCLXVI])M{0,4}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_NUMBER = rf"(?:\d{{1,4}}|{_ROMAN}|(?i:{_ROMAN})|(?i:{_NUMBER_WORD}))"
# 'Chapter 3', 'CHAPTER III.', 'Chapter Twenty-One: The Storm', 'Part II — Winter', 'Prologue'.
# What follows the number is either nothing, or a separator and a short title, or a title
# in Title Case: 'Part one of the plan was simple.' is a sentence, not a heading.
_KEYWORD = r"(?i:chapter|part|book)"
_STANDALONE = r"(?i:prologue|epilogue|preface|introduction|afterword|foreword)"
_SEPARATED_TITLE = r"\s*[.:—–-]\s*[^\n]{0,80}"
_TITLE_CASE = (
    r"\s+(?:[A-Z0-9][\w'’-]*)(?:\s+(?:[A-Z0-9][\w'’-]*|of|the|and|a|an|in|on|to|at|for|by))*"
)
_CHAPTER_LINE = re.compile(
    rf"^\s*(?:{_KEYWORD}\s+{_NUMBER}|{_STANDALONE})(?:{_SEPARATED_TITLE}|{_TITLE_CASE})?\s*[.:]?\s*$"
)
# A line of symbols only ('* * *', '----') separates scenes: a paragraph break, not speech.
_SCENE_BREAK = re.compile(r"^\s*[^\w\s]+(?:\s+[^\w\s]+)*\s*$")


def is_chapter_heading(line: str) -> bool:
    return len(line) <= 100 and bool(_CHAPTER_LINE.match(line))


def _blocks(text: str) -> list[list[str]]:
    """Blocks of non-empty lines, split at blank lines and at scene-break lines."""
    blocks: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _SCENE_BREAK.match(line):
            if blocks[-1]:
                blocks.append([])
            continue
        blocks[-1].append(line)
    return [block for block in blocks if block]


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by blank lines or scene breaks; hard-wrapped lines are joined."""
    return [" ".join(block) for block in _blocks(text)]


def parse_plaintext(text: str, *, default_title: str) -> Document:
    """Parse plain text. A text with no chapter headings is one chapter named default_title.

    A heading is a line of its own: either a whole block, or the first line of a block
    whose text starts on the next line.
    """
    chapters: list[Chapter] = []
    title: str | None = None
    body: list[str] = []
    preamble: list[str] = []

    def flush() -> None:
        if title is None:
            preamble.extend(body)
        else:
            chapters.append(Chapter(title=title, paragraphs=tuple(body), heading=True))

    for block in _blocks(text):
        if is_chapter_heading(block[0]):
            flush()
            title, body = block[0].rstrip(".:"), []
            block = block[1:]
        if block:
            body.append(" ".join(block))
    flush()

    if preamble:
        # Text before the first heading (a title page, a dedication) is read first.
        chapters.insert(0, Chapter(title=default_title, paragraphs=tuple(preamble)))
    return Document(title=default_title, chapters=tuple(chapters))
