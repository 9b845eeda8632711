"""URLs and e-mail addresses in their spoken form: 'jane.doe@example.com' -> 'jane dot doe
at example dot com'; 'https://www.example.com/docs' -> 'w w w dot example dot com slash
docs' (nobody reads the scheme aloud)."""

from __future__ import annotations

import re

_TLDS = "com|org|net|edu|gov|io|dev|app|ai|co|uk|us|ca|au|de|fr|nl|es|it|eu|info|biz|me|tv|ly"
_EMAIL = re.compile(r"(?<![\w.+-])([\w+-]+(?:\.[\w+-]+)*)@([\w-]+(?:\.[\w-]+)+)(?<![.-])")
_URL = re.compile(
    r"(?<![\w@/.])(?:(?:https?|ftp)://[^\s<>\"]+|www\.[^\s<>\"]+"
    rf"|(?:[a-z0-9-]+\.)+(?:{_TLDS})\b(?:/[^\s<>\"]*)?)",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?)]}'\"”’"
_SYMBOLS = {
    ".": "dot",
    "/": "slash",
    "-": "dash",
    "_": "underscore",
    "?": "question mark",
    "=": "equals",
    "&": "and",
    "#": "hash",
    "~": "tilde",
    ":": "colon",
    "+": "plus",
    "%": "percent",
}
_SYMBOL = re.compile("[" + re.escape("".join(_SYMBOLS)) + "]")


def _spell(text: str) -> str:
    words = _SYMBOL.sub(lambda m: f" {_SYMBOLS[m.group(0)]} ", text)
    return " ".join(words.split())


def _email(match: re.Match[str]) -> str:
    local, domain = match.groups()
    return f"{_spell(local)} at {_spell(domain)}"


def _url(match: re.Match[str]) -> str:
    url = match.group(0)
    core = url.rstrip(_TRAILING)
    if core.count("(") > core.count(")") and url[len(core) : len(core) + 1] == ")":
        core += ")"  # a Wikipedia-style (parenthesised) path keeps its bracket
    tail = url[len(core) :]
    spoken = re.sub(r"^[a-z]+://", "", core, flags=re.IGNORECASE).rstrip("/")
    if spoken.lower().startswith("www."):
        spoken = "w w w." + spoken[4:]
    return _spell(spoken) + tail


# Literal-led, so the regex engine skips ahead fast: most paragraphs hold no URL, and the
# full pattern, tried at every word, costs ten times more than this test.
_MAYBE_URL = re.compile(rf"://|www\.|\.(?:{_TLDS})\b", re.IGNORECASE)


def speak_emails(text: str) -> str:
    """E-mail addresses in `text`, read out."""
    if "@" not in text:
        return text
    # Only the words holding an @ are tried: the address pattern is slow to try at every
    # position of a long paragraph.
    out: list[str] = []
    done = 0
    at = text.find("@")
    while at != -1:
        start = max(text.rfind(" ", 0, at) + 1, done)
        end = text.find(" ", at)
        end = len(text) if end == -1 else end
        out += [text[done:start], _EMAIL.sub(_email, text[start:end])]
        done = end
        at = text.find("@", end)
    out.append(text[done:])
    return "".join(out)


def speak_urls(text: str) -> str:
    """URLs and bare domains with a common top-level domain (example.com) read out; a
    sentence's final dot after a URL stays a full stop."""
    if _MAYBE_URL.search(text) is None:
        return text
    return _URL.sub(_url, text)
