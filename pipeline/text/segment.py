"""Sentence-aware segmentation of paragraphs into chunks an engine can render.

Rules, in order of precedence:
- a chunk never spans two paragraphs (so a longer pause can follow a paragraph);
- a chunk is at most `max_chars` characters;
- short sentences of one paragraph are merged up to that budget;
- an overlong sentence is split at a clause boundary (; : — – ,), else between words;
  only a single token longer than the whole budget is ever cut inside itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "mx",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "no",
        "nos",
        "mt",
        "capt",
        "col",
        "gen",
        "lt",
        "sgt",
        "rev",
        "hon",
        "inc",
        "ltd",
        "co",
        "corp",
        "fig",
        "figs",
        "vol",
        "vols",
        "ch",
        "pp",
        "approx",
        "dept",
        "est",
        "govt",
        "univ",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "a.m",
        "p.m",
        "u.s",
        "u.k",
    ]
)
_CLOSERS = "\"'”’»)]}"
# Sentence end: terminal punctuation, optional closing quotes/brackets, then space or end.
_LATIN_END = re.compile(rf"[.!?…]+[{re.escape(_CLOSERS)}]*(?=\s|$)")
# CJK full-width terminators end a sentence with no space after them.
_CJK_END = re.compile(rf"[。！？]+[{re.escape(_CLOSERS)}」』]*")
_CLAUSE_STRONG = re.compile(r"(?<=[;:])\s+|\s+(?=[—–]\s)|(?<=[—–])\s+")
_CLAUSE_WEAK = re.compile(r"(?<=,)\s+|(?<=[、，])")
# Full-width clause marks need no space after them: a cut right after one is between words.
_CLAUSE_CJK = re.compile(r"(?<=[；：])")


@dataclass(frozen=True)
class Segment:
    """One chunk of text to render, and whether it opens a paragraph."""

    text: str
    paragraph_start: bool


def _is_abbreviation(text: str, dot_index: int) -> bool:
    start = dot_index
    while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot_index].lower()
    if not word:
        return False
    if word in _ABBREVIATIONS:
        return True
    # A lone capital initial ('J. R. R. Tolkien'), but not the pronoun 'I' ending a sentence.
    return len(word) == 1 and text[start].isupper() and text[start] != "I"


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences; joining them with spaces gives back its words."""
    text = " ".join(paragraph.split())
    cuts: list[int] = []
    for match in _LATIN_END.finditer(text):
        end = match.end()
        if end >= len(text):
            continue
        punct = match.group(0).rstrip(_CLOSERS)
        if punct == "." and _is_abbreviation(text, match.start()):
            continue
        following = text[end:].lstrip()
        if following and following[0].islower():
            continue  # 'etc. and so on', 'e.g. this': no new sentence
        cuts.append(end)
    for match in _CJK_END.finditer(text):
        if match.end() < len(text):
            cuts.append(match.end())
    sentences: list[str] = []
    start = 0
    for cut in sorted(set(cuts)):
        piece = text[start:cut].strip()
        if piece:
            sentences.append(piece)
        start = cut
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _grapheme_safe(text: str, cut: int) -> int:
    """Move a hard cut back so it does not split a grapheme cluster (a base letter and its
    combining marks, a virama and the consonant it joins, a ZWJ sequence)."""
    while 0 < cut < len(text) and (
        unicodedata.category(text[cut]) in ("Mn", "Mc", "Me")
        or text[cut] in "\u200d\u200c"
        or text[cut - 1] in "\u200d"
        or "VIRAMA" in unicodedata.name(text[cut - 1], "")
    ):
        cut -= 1
    return cut if cut > 0 else len(text[:1])


def _best_cut(text: str, max_chars: int) -> int:
    """Index at which to cut `text` so the head fits max_chars, at the best boundary."""
    floor = max_chars // 4  # do not shave off a sliver when a better cut exists
    for pattern in (_CLAUSE_STRONG, _CLAUSE_CJK, _CLAUSE_WEAK):
        cuts = [
            m.start()
            for m in pattern.finditer(text, 0, max_chars + 1)
            if floor <= m.start() <= max_chars
        ]
        if cuts:
            return cuts[-1]
    space = text.rfind(" ", 0, max_chars + 1)
    if space > 0:
        return space
    return _grapheme_safe(text, max_chars)  # one token longer than the budget


def split_long(sentence: str, max_chars: int) -> list[str]:
    """Split a sentence longer than max_chars into pieces that fit, at clause boundaries."""
    pieces: list[str] = []
    rest = sentence.strip()
    while len(rest) > max_chars:
        cut = _best_cut(rest, max_chars)
        head, rest = rest[:cut].strip(), rest[cut:].strip()
        if head:
            pieces.append(head)
    if rest:
        pieces.append(rest)
    return pieces


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def segment_paragraph(paragraph: str, max_chars: int) -> list[str]:
    """Chunks of one paragraph: sentences packed greedily up to max_chars."""
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(paragraph):
        for piece in split_long(sentence, max_chars):
            if current and len(current) + 1 + len(piece) <= max_chars:
                current = f"{current} {piece}"
            else:
                if current:
                    chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return [chunk for chunk in chunks if _speakable(chunk)]


def segment_paragraphs(paragraphs: Iterable[str], max_chars: int) -> Iterator[Segment]:
    """Segments for a chapter's paragraphs, flagging the first chunk of each paragraph."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    for paragraph in paragraphs:
        for index, chunk in enumerate(segment_paragraph(paragraph, max_chars)):
            yield Segment(text=chunk, paragraph_start=index == 0)


def has_speech(paragraphs: Iterable[str], max_chars: int) -> bool:
    """Whether the paragraphs make at least one chunk to speak (not only markup, code or
    symbols): the one check planning, submitting and the early input check share."""
    return next(segment_paragraphs(paragraphs, max_chars), None) is not None
