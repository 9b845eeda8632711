"""Checking one audio file against the chunks it should say.

The whole file's transcript is aligned with the whole file's text at once (`align`), so a
word the recogniser timed a little across a chunk boundary still pairs with its own
chunk; words heard but not in the text go to the chunk whose span holds them. Then each
chunk is judged on its own: how many of its tokens were misheard, dropped or added, and
in what pattern (a dropped ending, a repeated phrase, silence), and each of its words gets
the times the recogniser heard it at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import numpy as np

from pipeline.qa.align import align
from pipeline.qa.words import Token, normal_tokens, split_words, tokens_of

# A paired word heard further than this outside its chunk's span is not that chunk's
# speech (two chunks' audio swapped, say): it counts as an error for the chunk.
MISPLACED_SECONDS = 1.5
SILENCE_DBFS = -45.0  # a span quieter than this (RMS) is silence, not speech
ERROR_RATE_LIMIT = 0.5  # more errors than this per text token: unintelligible,
CHAR_DIFFERENCE_LIMIT = 0.4  # and the heard text this far from the written one, by letters:
# "hair" for "hare" is a wrong word but the right sound; "la da la" for a sentence is not

FLAGS = (
    "silence",  # nothing heard, and the span is quiet
    "noise",  # nothing heard, but the span is not quiet
    "cut_off",  # the last words were not heard
    "missing_words",  # words in the middle were not heard
    "repeated_words",  # a phrase of the text was heard more times than it is written
    "invented_words",  # a run of words was heard that the text does not have
    "unintelligible",  # too many words misheard
)


@dataclass(frozen=True)
class Span:
    """A chunk as the manifest places it in its file: its text, start and end (seconds)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class HeardWord:
    """A word as the recogniser heard it, with its times in the file (seconds)."""

    text: str
    start: float
    end: float

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2


@dataclass(frozen=True)
class TimedWord:
    """A source word of a chunk with the times it was heard at (file seconds)."""

    text: str
    start: float
    end: float


@dataclass
class ChunkCheck:
    """The verdict on one chunk: its error rate, flags, what was heard, its timed words."""

    index: int  # the chunk's place in its file, from 0
    start: float
    end: float
    text: str
    tokens: int  # compared tokens of the text
    errors: int  # substituted + deleted + inserted tokens
    flags: list[str] = field(default_factory=list)
    heard: str = ""
    words: list[TimedWord] = field(default_factory=list)
    word_count: int = 0  # source words, timed or not
    stage: int = 0  # the QA stage that decided (pipeline.qa.twostage): 1, 2, or 0 unknown

    @property
    def error_rate(self) -> float:
        return self.errors / self.tokens if self.tokens else float(self.errors > 0)


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of samples in [-1, 1], in dBFS (-120 for digital silence or none)."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 1e-6 else -120.0


def _owner(spans: Sequence[Span], moment: float) -> int:
    """The chunk whose span holds `moment`, or the nearest one."""
    return min(
        range(len(spans)),
        key=lambda i: (
            0.0
            if spans[i].start <= moment <= spans[i].end
            else min(abs(spans[i].start - moment), abs(moment - spans[i].end))
        ),
    )


def _runs(indexes: Sequence[int]) -> list[list[int]]:
    """Consecutive runs of sorted integers."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return any(list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def check_file(
    spans: Sequence[Span], heard: Sequence[HeardWord], samples: np.ndarray, sample_rate: int
) -> list[ChunkCheck]:
    """Judge every chunk of one file (see the module docstring)."""
    words = [split_words(span.text) for span in spans]
    ref: list[tuple[int, Token]] = [(c, t) for c, w in enumerate(words) for t in tokens_of(w)]
    heard = _whole_words(heard)
    hyp: list[tuple[int, str]] = [
        (h, norm) for h, word in enumerate(heard) for norm in normal_tokens(word.text)
    ]
    alignment = align([t.norm for _, t in ref], [norm for _, norm in hyp])

    checks = [
        ChunkCheck(i, s.start, s.end, s.text, 0, 0, word_count=len(words[i]))
        for i, s in enumerate(spans)
    ]
    deleted: list[list[bool]] = [[] for _ in spans]  # per chunk, per token: not heard
    heard_by: list[set[int]] = [set() for _ in spans]  # recognised words each chunk got
    extra: list[list[int]] = [[] for _ in spans]  # hypothesis token indexes added there
    timed: list[dict[int, tuple[float, float]]] = [{} for _ in spans]  # source word -> times
    for r, (chunk, token) in enumerate(ref):
        check, span = checks[chunk], spans[chunk]
        check.tokens += 1
        h = alignment.heard[r]
        word = heard[hyp[h][0]] if h is not None else None
        if word is not None and not (
            span.start - MISPLACED_SECONDS <= word.middle <= span.end + MISPLACED_SECONDS
        ):
            extra[_owner(spans, word.middle)].append(h)  # type: ignore[arg-type]
            word, h = None, None
        deleted[chunk].append(word is None)
        if word is None:
            check.errors += 1
            continue
        heard_by[chunk].add(hyp[h][0])  # type: ignore[index]
        if not alignment.exact[r]:
            check.errors += 1
        start, end = max(word.start, span.start), min(word.end, span.end)
        was = timed[chunk].get(token.word)
        timed[chunk][token.word] = (min(was[0], start), max(was[1], end)) if was else (start, end)
    for h, _after in alignment.inserted:
        extra[_owner(spans, heard[hyp[h][0]].middle)].append(h)

    for chunk, check in enumerate(checks):
        span = spans[chunk]
        added = sorted(extra[chunk])
        check.errors += len(added)
        heard_by[chunk].update(hyp[h][0] for h in added)
        check.heard = " ".join(heard[i].text.strip() for i in sorted(heard_by[chunk]))
        check.words = _timed_words(words[chunk], timed[chunk])
        tokens = [t.norm for c, t in ref if c == chunk]
        said = " ".join(norm for word, norm in hyp if word in heard_by[chunk])
        check.flags = _flags(
            tokens,
            deleted[chunk],
            [[hyp[h][1] for h in run] for run in _runs(added)],
            rms_dbfs(samples[int(span.start * sample_rate) : int(span.end * sample_rate)]),
            check.error_rate,
            char_difference(" ".join(tokens), said),
        )
    return checks


def _whole_words(heard: Sequence[HeardWord]) -> list[HeardWord]:
    """The recogniser's words with their pieces joined: Whisper starts each word with a
    space, and a piece without one (".99" after "$24", ",000" after "1") belongs to the
    word before it; normalised apart, "$24" and ".99" would not read as the price."""
    out: list[HeardWord] = []
    for word in heard:
        if out and word.text and not word.text[0].isspace():
            last = out[-1]
            out[-1] = HeardWord(last.text + word.text, last.start, max(last.end, word.end))
        else:
            out.append(word)
    return out


def _timed_words(words: list[str], times: dict[int, tuple[float, float]]) -> list[TimedWord]:
    """Source words with times, in order; a word heard out of order stays untimed."""
    out: list[TimedWord] = []
    for index, text in enumerate(words):
        if index in times and (not out or times[index][0] >= out[-1].start):
            start, end = times[index]
            out.append(TimedWord(text, round(start, 3), round(max(start, end), 3)))
    return out


def char_difference(written: str, heard: str) -> float:
    """How far apart two texts are letter by letter: 0 the same, 1 nothing in common."""
    if not written and not heard:
        return 0.0
    return 1.0 - SequenceMatcher(None, written, heard, autojunk=False).ratio()


def _flags(
    tokens: list[str],
    deleted: list[bool],
    added_runs: list[list[str]],
    level: float,
    rate: float,
    letters: float,
) -> list[str]:
    """What went wrong with one chunk, in the order of FLAGS."""
    n = len(tokens)
    if n == 0:
        return []
    flags: list[str] = []
    if all(deleted) and not added_runs:
        return ["silence" if level < SILENCE_DBFS else "noise"]
    trailing = next((i for i, gone in enumerate(reversed(deleted)) if not gone), n)
    cut = trailing >= max(2, math.ceil(0.3 * n)) and trailing < n
    if cut:
        flags.append("cut_off")
    inner = deleted[: n - trailing] if cut else deleted
    if any(
        len(run) >= max(3, math.ceil(0.2 * n))
        for run in _runs([i for i, g in enumerate(inner) if g])
    ):
        flags.append("missing_words")
    repeats = [run for run in added_runs if len(run) >= 2 and _contains(tokens, run)]
    if repeats:
        flags.append("repeated_words")
    if any(len(run) >= 3 for run in added_runs if run not in repeats):
        flags.append("invented_words")
    if not flags and rate > ERROR_RATE_LIMIT and letters > CHAR_DIFFERENCE_LIMIT:
        flags.append("unintelligible")
    return flags
