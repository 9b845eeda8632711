"""Timing outputs: SRT and WebVTT subtitles and a JSON of chunk start and end times.

Times come from the stitched layout, the same sample positions the audio was written
at (after trimming, pauses, head and tail silence), so they stay right however the
pauses are set. A chunk's own start and end are exact. A chunk too long for one
subtitle (two lines of 42 characters) is split into several cues at sentence, then
clause, then word boundaries, and its time is shared among them in proportion to their
characters: the engine gives no word timings, so inside a chunk the cue times are an
estimate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LINE_CHARS = 42
CUE_LINES = 2


@dataclass(frozen=True)
class TimedText:
    """A chunk placed in a file: its text and first and last sample (exclusive)."""

    text: str
    start: int
    end: int
    chapter: int | None = None  # its chapter's number, in a whole-book file


@dataclass(frozen=True)
class Cue:
    start: int  # samples
    end: int
    lines: tuple[str, ...]


def wrap(text: str, width: int = LINE_CHARS) -> tuple[str, ...]:
    """Text as lines of at most `width` characters, broken at spaces and balanced: two
    lines of a two-line cue are about as long as each other. A word longer than a line
    has a line of its own."""
    words = text.split()
    if len(text) <= width or len(words) < 2:
        return (" ".join(words),)
    if len(" ".join(words)) <= 2 * width + 1:
        best: tuple[str, str] | None = None
        for cut in range(1, len(words)):
            first, second = " ".join(words[:cut]), " ".join(words[cut:])
            if (
                len(first) <= width
                and len(second) <= width
                and (
                    best is None or abs(len(first) - len(second)) < abs(len(best[0]) - len(best[1]))
                )
            ):
                best = (first, second)
        if best is not None:
            return best
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return tuple(lines)


def _fits(words: Sequence[str]) -> bool:
    return len(wrap(" ".join(words))) <= CUE_LINES


SENTENCE_END = re.compile(r"[.!?…]['\")\]”’]*$")
CLAUSE_END = re.compile(r"[,;:—–]['\")\]”’]*$")


def _runs(words: list[str], end: re.Pattern[str]) -> list[list[str]]:
    """Words grouped into runs that each end where `end` matches (or at the last word)."""
    runs: list[list[str]] = [[]]
    for word in words:
        runs[-1].append(word)
        if end.search(word):
            runs.append([])
    return [run for run in runs if run]


def _parts(words: list[str]) -> list[list[str]]:
    """A sentence as parts that each fit a cue: whole, else its clauses, else words."""
    if _fits(words):
        return [words]
    out: list[list[str]] = []
    for clause in _runs(words, CLAUSE_END):
        if _fits(clause):
            out.append(clause)
            continue
        out.extend(_balanced(clause))
    return out


def _greedy(words: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if parts[-1] and not _fits([*parts[-1], word]):
            parts.append([])
        parts[-1].append(word)
    return parts


def _balanced(words: list[str]) -> list[list[str]]:
    """Words as the fewest cue-sized parts, of about equal length (no one-word orphan
    at the end), broken between words."""
    greedy = _greedy(words)
    count = len(greedy)
    target = len(" ".join(words)) / count
    parts: list[list[str]] = [[]]
    for word in words:
        if parts[-1] and len(parts) < count and len(" ".join([*parts[-1], word])) > target:
            parts.append([])
        parts[-1].append(word)
    return parts if all(_fits(part) for part in parts) else greedy


def _joins(piece: list[str], new_sentence: bool) -> bool:
    """May the next part share this piece's cue? A sentence starts a cue of its own
    (unless the one before is a few words, like "Yes."); a clause joins the clauses
    before it in its sentence; words broken out of a clause never join."""
    if new_sentence:
        return len(" ".join(piece)) < 20
    return bool(CLAUSE_END.search(piece[-1]))


def split_text(text: str) -> list[str]:
    """A chunk's text as cue-sized pieces (each fits two lines): breaks fall between
    sentences where they can, then between clauses, then between words; pieces that fit
    together share a cue."""
    pieces: list[list[str]] = []
    for sentence in _runs(text.split(), SENTENCE_END):
        for index, part in enumerate(_parts(sentence)):
            if pieces and _joins(pieces[-1], index == 0) and _fits([*pieces[-1], *part]):
                pieces[-1].extend(part)
            else:
                pieces.append(list(part))
    return [" ".join(piece) for piece in pieces]


def cues(chunks: Sequence[TimedText]) -> list[Cue]:
    """One or more cues per chunk, in order, never overlapping."""
    out: list[Cue] = []
    for chunk in chunks:
        pieces = split_text(chunk.text)
        if not pieces:
            continue
        weights = [len(p) + 1 for p in pieces]
        total = sum(weights)
        length = chunk.end - chunk.start
        at = chunk.start
        done = 0
        for piece, weight in zip(pieces, weights, strict=True):
            done += weight
            end = chunk.start + round(length * done / total)
            out.append(Cue(at, end, wrap(piece)))
            at = end
    return out


def _clock(sample: int, rate: int, separator: str) -> str:
    millis = round(sample * 1000 / rate)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def to_srt(chunks: Sequence[TimedText], rate: int) -> str:
    blocks = [
        f"{number}\n{_clock(cue.start, rate, ',')} --> {_clock(cue.end, rate, ',')}\n"
        + "\n".join(cue.lines)
        + "\n"
        for number, cue in enumerate(cues(chunks), start=1)
    ]
    return "\n".join(blocks)


def _vtt_text(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(chunks: Sequence[TimedText], rate: int) -> str:
    blocks = ["WEBVTT\n"]
    for number, cue in enumerate(cues(chunks), start=1):
        blocks.append(
            f"{number}\n{_clock(cue.start, rate, '.')} --> {_clock(cue.end, rate, '.')}\n"
            + "\n".join(_vtt_text(line) for line in cue.lines)
            + "\n"
        )
    return "\n".join(blocks)


def to_json(
    chunks: Sequence[TimedText],
    rate: int,
    *,
    audio_file: str,
    duration_samples: int,
    chapters: Sequence[dict[str, Any]] = (),
) -> str:
    """Every chunk's exact start and end (seconds, and samples at `rate`)."""
    body: dict[str, Any] = {
        "file": audio_file,
        "sample_rate": rate,
        "duration": round(duration_samples / rate, 3),
        "chunks": [
            {
                "index": index,
                "text": chunk.text,
                "start": round(chunk.start / rate, 3),
                "end": round(chunk.end / rate, 3),
                "start_sample": chunk.start,
                "end_sample": chunk.end,
                **({"chapter": chunk.chapter} if chunk.chapter is not None else {}),
            }
            for index, chunk in enumerate(chunks)
        ],
    }
    if chapters:
        body["chapters"] = list(chapters)
    return json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


TIMING_TYPES = {
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "json": "application/json",
}


def timing_files(
    kinds: Sequence[str],
    chunks: Sequence[TimedText],
    rate: int,
    *,
    audio_key: str,
    duration_samples: int,
    chapters: Sequence[dict[str, Any]] = (),
) -> dict[str, tuple[bytes, str]]:
    """The timing files of one audio file: kind -> (bytes, content type)."""
    out: dict[str, tuple[bytes, str]] = {}
    for kind in kinds:
        if kind == "srt":
            text = to_srt(chunks, rate)
        elif kind == "vtt":
            text = to_vtt(chunks, rate)
        else:
            name = audio_key.rsplit("/", 1)[-1]
            text = to_json(
                chunks, rate, audio_file=name, duration_samples=duration_samples, chapters=chapters
            )
        out[kind] = (text.encode("utf-8"), TIMING_TYPES[kind])
    return out


def to_word_vtt(words: Sequence[tuple[str, float, float]]) -> str:
    """WebVTT with one cue per word: (text, start, end) in seconds, in order."""
    blocks = ["WEBVTT\n"]
    for number, (text, start, end) in enumerate(words, start=1):
        first, last = round(start * 1000), round(max(end, start) * 1000)
        blocks.append(
            f"{number}\n{_clock(first, 1000, '.')} --> {_clock(last, 1000, '.')}\n"
            f"{_vtt_text(text)}\n"
        )
    return "\n".join(blocks)
