"""Words as QA compares them: both sides (the text a chunk should say, and what the
recogniser heard) go through the same normaliser, word by word, so "$5", "5 dollars" and
"five dollars" compare equal, and every compared token remembers the source word it came
from (a misheard word keeps its source spelling for the word timings)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.text.normalize import normalize_text

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
# letters, digits and inner apostrophes make a token; everything else separates tokens
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@dataclass(frozen=True)
class Token:
    """One compared token: its normal form and the index of the word it came from."""

    norm: str
    word: int


def split_words(text: str) -> list[str]:
    """The text's words as a reader sees them (split on white space), punctuation kept."""
    return text.split()


def normal_tokens(word: str) -> list[str]:
    """The normal forms of one written word: numbers, money and abbreviations spelled out
    as the renderer would say them, lower case, no punctuation, hyphens split."""
    spoken = normalize_text(word.translate(_APOSTROPHES))
    return [t.lower() for t in _TOKEN.findall(spoken.replace("-", " "))]


def tokens_of(words: list[str]) -> list[Token]:
    """Every word's normal tokens, in order, each pointing back at its word."""
    return [Token(norm, index) for index, word in enumerate(words) for norm in normal_tokens(word)]
