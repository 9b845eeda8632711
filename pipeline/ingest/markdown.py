"""Markdown reader: chapters from headings, speech from paragraphs, markup dropped.

Uses markdown-it-py (a CommonMark parser) rather than regexes, so emphasis, links, lists,
block quotes and code are understood the way a renderer would understand them.
"""

from __future__ import annotations

import re
from collections import Counter

from markdown_it import MarkdownIt
from markdown_it.token import Token

from pipeline.ingest.document import Chapter, Document

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta, text[match.end() :]


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        # images, raw HTML and link markup carry no speech; a link's text arrives as 'text'
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def _blocks(tokens: list[Token]) -> list[tuple[str, int, str]]:
    """Flatten to (kind, heading level, text) with kind 'h' or 'p'."""
    blocks: list[tuple[str, int, str]] = []
    heading_level = 0
    for token in tokens:
        if token.type == "heading_open":
            heading_level = int(token.tag[1:])
        elif token.type == "heading_close":
            heading_level = 0
        elif token.type == "inline":
            text = _inline_text(token)
            if not text:
                continue
            if heading_level:
                blocks.append(("h", heading_level, text))
            else:
                blocks.append(("p", 0, text))
    return blocks


def parse_markdown(text: str, *, default_title: str) -> Document:
    """Parse Markdown into chapters.

    The book's title is front matter's `title:`, else a first heading that is the only one
    at the top level with deeper headings under it (the usual '# Book title'). Chapters
    start at the shallowest of the remaining heading levels that occurs more than once
    (else the shallowest); a shallower heading later on ('# Appendix') starts a chapter
    too, and deeper ones are read as short paragraphs.
    """
    meta, body = _front_matter(text)
    blocks = _blocks(MarkdownIt("commonmark").enable("table").parse(body))
    headings = [(index, level) for index, (kind, level, _) in enumerate(blocks) if kind == "h"]
    title = meta.get("title") or default_title

    title_index: int | None = None
    if headings:
        first_index, first_level = headings[0]
        top_count = sum(1 for _, level in headings if level == first_level)
        deeper = any(level > first_level for _, level in headings)
        if first_level == min(level for _, level in headings) and top_count == 1 and deeper:
            title_index = first_index
            title = meta.get("title") or blocks[first_index][2]
    levels = Counter(level for index, level in headings if index != title_index)
    chapter_level = 0
    if levels:
        repeated = sorted(level for level, count in levels.items() if count > 1)
        chapter_level = repeated[0] if repeated else min(levels)

    chapters: list[Chapter] = []
    current_title: str | None = None
    current: list[str] = []
    preamble: list[str] = []

    def flush() -> None:
        if current_title is None:
            preamble.extend(current)
        else:
            chapters.append(Chapter(current_title, tuple(current), heading=True))

    for index, (kind, level, content) in enumerate(blocks):
        if index == title_index:
            continue
        if kind == "h" and level <= chapter_level:
            flush()
            current_title, current = content, []
        else:
            current.append(content)  # paragraphs, and sub-headings read as short paragraphs
    flush()
    if preamble:
        chapters.insert(0, Chapter(title, tuple(preamble)))
    return Document(title=title, chapters=tuple(chapters), author=meta.get("author"), metadata=meta)
