"""Common English abbreviations written out: titles (Dr., Mrs.), Latin (e.g., etc.),
street words (St., Ave.) and numbering words (No. 5).

The dot of an abbreviation can also end the sentence ("... apples, pears, etc. Then");
written out, that dot is kept when what follows looks like a new sentence, so the
segmenter still finds the sentence end. A title's dot never ends a sentence: "Dr. Smith"
becomes "Doctor Smith" and is one sentence.
"""

from __future__ import annotations

import re

# Before a name: never end a sentence.
_TITLES = {
    "mr": "Mister",
    "mrs": "Missus",
    "ms": "Miz",
    "prof": "Professor",
    "capt": "Captain",
    "col": "Colonel",
    "gen": "General",
    "lt": "Lieutenant",
    "sgt": "Sergeant",
    "rev": "Reverend",
    "hon": "Honorable",
    "gov": "Governor",
    "sen": "Senator",
    "mt": "Mount",
}
# Anywhere, and always followed by more of the sentence.
_INNER = {
    "e.g": "for example",
    "i.e": "that is",
    "vs": "versus",
    "approx": "approximately",
    "cf": "compare",
}
# Anywhere; may end a sentence.
_WORDS = {
    "etc": "et cetera",
    "jr": "Junior",
    "sr": "Senior",
    "inc": "Incorporated",
    "ltd": "Limited",
    "corp": "Corporation",
    "ave": "Avenue",
    "blvd": "Boulevard",
    "rd": "Road",
}
# Only before a number: "No. 5" is "number five", but "No. I won't." is a word.
_BEFORE_NUMBER = {
    "no": "number",
    "nos": "numbers",
    "pp": "pages",
    "fig": "figure",
    "figs": "figures",
    "vol": "volume",
    "ch": "chapter",
}
# Saint or Street, Doctor or Drive: decided by the words around them.
_EITHER = {"st": ("Saint", "Street"), "dr": ("Doctor", "Drive")}

_ALL = sorted({*_TITLES, *_INNER, *_WORDS, *_BEFORE_NUMBER, *_EITHER}, key=len, reverse=True)
_ABBREVIATION = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(word) for word in _ALL) + r")\.", re.IGNORECASE
)
_NEXT_WORD = re.compile(r"\s+([\"“'‘(]?)(\w)")
_NEXT_NUMBER = re.compile(r"\s*\d")
# "Vol. IV", "Ch. XII": a numeral is a number here, but "No. I won't" is the pronoun.
_NEXT_NUMERAL = re.compile(r"\s*(?:\d|[IVXLC]+\b)")
_NUMERAL_OK = frozenset(["vol", "ch", "pp", "fig"])
_PREVIOUS_WORD = re.compile(r"(\w+)([^\w]*)$")


def ends_sentence(match: re.Match[str]) -> bool:
    """True if the text after `match` starts a new sentence: nothing, or a capital."""
    rest = match.string[match.end() :]
    if not rest.strip():
        return True
    following = _NEXT_WORD.match(rest)
    return following is not None and following.group(2).isupper()


def _next_is_name(match: re.Match[str]) -> bool:
    following = _NEXT_WORD.match(match.string, match.end())
    return following is not None and following.group(2).isupper()


def _after_name(match: re.Match[str]) -> bool:
    """The abbreviation follows a capitalised word inside a sentence ('Baker St.'), not a
    sentence's first word ('Visit St. Paul's')."""
    before = match.string[: match.start()]
    previous = _PREVIOUS_WORD.search(before.rstrip())
    if previous is None or not previous.group(1)[0].isupper() or previous.group(2):
        return False
    head = before[: previous.start()].rstrip()
    return bool(head) and head[-1] not in '.!?:;"“'


def _capitalised(word: str, like: str) -> str:
    return word[0].upper() + word[1:] if like[0].isupper() else word


def _expand(match: re.Match[str]) -> str:
    written = match.group(1)
    key = written.lower()
    if key in _BEFORE_NUMBER:
        after = _NEXT_NUMERAL if key in _NUMERAL_OK else _NEXT_NUMBER
        if after.match(match.string, match.end()) is None:
            return match.group(0)
        return _capitalised(_BEFORE_NUMBER[key], written)
    if key in _TITLES:
        if not written[0].isupper() or not match.string[match.end() :].strip():
            return match.group(0)  # 'ms.' as manuscript, or a title ending the text: leave
        return _TITLES[key]
    if key in _INNER:
        return _capitalised(_INNER[key], written)
    if key in _EITHER:
        before_name, after_name = _EITHER[key]
        if _next_is_name(match) and not _after_name(match):
            return before_name
        words = after_name
    else:
        words = _capitalised(_WORDS[key], written)
    return words + ("." if ends_sentence(match) else "")


_KEYS = frozenset(_ALL)


def expand_abbreviations(text: str) -> str:
    """Write out the abbreviations in one paragraph of English."""
    # From each dot back to the word before it, and the pattern tried only there: trying
    # a 40-word alternation at every position of a paragraph costs twenty times more.
    out: list[str] = []
    done = 0
    dot = text.find(".")
    while dot != -1:
        start = dot
        while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
            start -= 1
        if start >= done and text[start:dot].lower() in _KEYS:
            match = _ABBREVIATION.match(text, start)
            if match is not None and match.end() == dot + 1:
                out += [text[done:start], _expand(match)]
                done = match.end()
        dot = text.find(".", dot + 1)
    out.append(text[done:])
    return "".join(out)
