"""A read-along chapter's text as written, with the spoken chunks (and their timed words)
found in it.

The manifest holds what was said: normalised, the lexicon applied ("five dollars",
"Ee-sop"). The book shows what was written ("$5", "Aesop"). Both go through QA's word
normaliser (`qa.words`), so "$5" and "five dollars" give the same tokens, and QA's
aligner pairs the two token sequences; every source word then belongs to the chunk whose
tokens it paired with, and takes the times of the spoken words it paired with. What
does not pair (a dash, a word the lexicon respelled beyond recognition) joins the chunk
of the word beside it in its paragraph: chunks never span paragraphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from itertools import groupby

from pipeline.ingest.document import Chapter
from pipeline.qa.align import align
from pipeline.qa.words import normal_tokens, split_words, tokens_of


@dataclass(frozen=True)
class Block:
    """A heading or a paragraph of the source, as words (split on white space)."""

    tag: str  # "h1" or "p"
    words: tuple[str, ...]


@dataclass(frozen=True)
class TimedWord:
    """A spoken word with its times in the audio file (seconds), from a timing file."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class SpokenChunk:
    """A chunk as said: its spoken text, its span in the audio file (seconds) and, where
    QA timed them, its words."""

    text: str
    start: float
    end: float
    words: tuple[TimedWord, ...] = ()


@dataclass
class Placement:
    """Where each chunk's words are in the source: per block, per word, the chunk's index
    (None: not spoken) and the times the word was heard at (None: untimed)."""

    blocks: list[Block]
    chunk_of: list[list[int | None]]
    times: list[list[tuple[float, float] | None]] = field(default_factory=list)

    def placed_chunks(self) -> list[int]:
        """The chunks that own at least one source word, in order."""
        return sorted({c for row in self.chunk_of for c in row if c is not None})


def source_blocks(chapter: Chapter) -> list[Block]:
    """The chapter as written: its heading (where the title stands in the text), then its
    paragraphs."""
    blocks = [Block("h1", tuple(split_words(chapter.title)))] if chapter.heading else []
    blocks += [Block("p", tuple(split_words(p))) for p in chapter.paragraphs]
    return [b for b in blocks if b.words]


def place_chunks(blocks: Sequence[Block], chunks: Sequence[SpokenChunk]) -> Placement:
    """Find every spoken chunk (and timed word) in the source words (module docstring)."""
    where = [(b, w) for b, block in enumerate(blocks) for w in range(len(block.words))]
    source = tokens_of([blocks[b].words[w] for b, w in where])
    spoken: list[tuple[int, int]] = []  # per spoken token: (chunk, word of the chunk)
    norms: list[str] = []
    for c, chunk in enumerate(chunks):
        for w, word in enumerate(split_words(chunk.text)):
            for norm in normal_tokens(word):
                spoken.append((c, w))
                norms.append(norm)
    alignment = align([t.norm for t in source], norms)

    flat_chunk: list[int | None] = [None] * len(where)
    said_as: dict[tuple[int, int], list[int]] = {}  # spoken word -> source words
    for r, h in enumerate(alignment.heard):
        if h is None:
            continue
        flat, (c, w) = source[r].word, spoken[h]
        if flat_chunk[flat] is None:
            flat_chunk[flat] = c
        if flat_chunk[flat] == c and flat not in said_as.setdefault((c, w), []):
            said_as[(c, w)].append(flat)

    for h, after in alignment.inserted:  # "3" said as "the third of": all three are its
        c, w = spoken[h]
        flat = source[after].word if after >= 0 else -1
        if flat >= 0 and flat_chunk[flat] == c and flat not in said_as.setdefault((c, w), []):
            said_as[(c, w)].append(flat)

    flat_times: list[tuple[float, float] | None] = [None] * len(where)
    for c, chunk in enumerate(chunks):
        for w, timed in _word_indexes(chunk):
            for flat in said_as.get((c, w), []):
                was = flat_times[flat]
                flat_times[flat] = (
                    (min(was[0], timed.start), max(was[1], timed.end))
                    if was
                    else (timed.start, timed.end)
                )

    placement = Placement(list(blocks), [], [])
    at = 0
    for block in blocks:
        row = flat_chunk[at : at + len(block.words)]
        placement.chunk_of.append(_fill(row))
        placement.times.append(flat_times[at : at + len(block.words)])
        at += len(block.words)
    return placement


def _word_indexes(chunk: SpokenChunk) -> list[tuple[int, TimedWord]]:
    """Each timed word with its index among the chunk's words: QA times a subset of them,
    in order, each carrying its word's spelling."""
    words = split_words(chunk.text)
    out: list[tuple[int, TimedWord]] = []
    at = 0
    for timed in chunk.words:
        found = next((i for i in range(at, len(words)) if words[i] == timed.text), None)
        if found is None:
            continue
        out.append((found, timed))
        at = found + 1
    return out


def _fill(row: list[int | None]) -> list[int | None]:
    """Unpaired words take the chunk of the paired word before them in the paragraph (the
    one after them at its start); a paragraph with nothing paired stays unspoken."""
    out = list(row)
    last: int | None = None
    for i, chunk in enumerate(out):
        if chunk is None:
            out[i] = last
        else:
            last = chunk
    following: int | None = None
    for i in range(len(out) - 1, -1, -1):
        if row[i] is not None:
            following = row[i]
        elif out[i] is None:
            out[i] = following
    return out


def chunk_id(chunk: int) -> str:
    """The element id of a chunk's span (a sentence clip's text)."""
    return f"c{chunk + 1}"


def word_id(chunk: int, word: int) -> str:
    """The element id of a chunk's timed source word (a word clip's text)."""
    return f"c{chunk + 1}w{word + 1}"


def chunk_words(placement: Placement) -> dict[int, list[tuple[str, float, float]]]:
    """Per chunk, its timed source words in reading order: (element id, start, end)."""
    out: dict[int, list[tuple[str, float, float]]] = {}
    counts: dict[int, int] = {}
    for chunks, times in zip(placement.chunk_of, placement.times, strict=True):
        for chunk, time in zip(chunks, times, strict=True):
            if chunk is None:
                continue
            index = counts.get(chunk, 0)
            counts[chunk] = index + 1
            if time is not None:
                out.setdefault(chunk, []).append((word_id(chunk, index), *time))
    return out


def body_markup(placement: Placement, timed: set[str]) -> str:
    """The chapter's blocks as XHTML: each chunk a span, each word with an id in `timed`
    a span inside it. A chunk found in two blocks (a stray pairing) gets its id in the
    first only: ids are unique."""
    lines: list[str] = []
    used: set[str] = set()
    counts: dict[int, int] = {}
    for block, chunks in zip(placement.blocks, placement.chunk_of, strict=True):
        pieces: list[str] = []
        at = 0
        for chunk, run in groupby(chunks):
            texts: list[str] = []
            for word in block.words[at : at + len(list(run))]:
                text = escape(word, quote=False)
                if chunk is not None:
                    index = counts.get(chunk, 0)
                    counts[chunk] = index + 1
                    if word_id(chunk, index) in timed:
                        text = f'<span id="{word_id(chunk, index)}">{text}</span>'
                texts.append(text)
            at += len(texts)
            pieces.append(_span(chunk, " ".join(texts), used))
        lines.append(f"<{block.tag}>{' '.join(pieces)}</{block.tag}>")
    return "\n".join(lines)


def _span(chunk: int | None, text: str, used: set[str]) -> str:
    if chunk is None:
        return text
    ident = chunk_id(chunk)
    if ident in used:
        return f"<span>{text}</span>"
    used.add(ident)
    return f'<span id="{ident}">{text}</span>'
