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


def speak_emails(text: str) -> str:
    """E-mail addresses in `text`, read out."""
    return _EMAIL.sub(_email, text)


def speak_urls(text: str) -> str:
    """URLs and bare domains with a common top-level domain (example.com) read out; a
    sentence's final dot after a URL stays a full stop."""
    return _URL.sub(_url, text)
