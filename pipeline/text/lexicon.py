"""Per-job pronunciation lexicons: fix how a word is said without touching the book.

File format (UTF-8 text, one entry a line)::

    # comments and blank lines are ignored
    Nguyen = win                  plain entry: whole words only
    nginx = engine x              a lowercase key matches any case (nginx, Nginx, NGINX)
    Nice = niece                  a key with a capital matches only that spelling (not "nice")
    /\\bDr\\.? Who\\b/i = Doctor Who  regex entry: /pattern/flags, flag i = ignore case;
                                  the replacement may use \\1 or \\g<name>
    Nguyen = [[ŋwˈɪn]]            phonemes inside [[ ]] for engines that take them (piper:
                                  espeak-ng IPA); refused for engines that do not

A key is split from its replacement at the first " = " (regex entries: after the closing
slash). Plain entries are applied first, all in one pass (longest key wins where two
overlap), then regex entries in file order. The lexicon runs on each chunk's text after
normalisation and segmentation, so changing an entry changes only the chunks that contain
its word: every other chunk keeps its content hash and its cached audio.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

_PHONEMES = re.compile(r"\[\[[^\[\]]+\]\]")
_FLAGS = {"i": re.IGNORECASE}
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class Entry:
    """One line of a lexicon: a plain word (or phrase) or a regex, and what to say."""

    line: int
    key: str
    replacement: str
    regex: bool = False
    flags: str = ""

    @property
    def phonemes(self) -> bool:
        return "[[" in self.replacement


class Lexicon:
    """Parsed entries, compiled once; `apply` rewrites one chunk's text."""

    def __init__(self, entries: list[Entry], *, name: str = "lexicon") -> None:
        self.name = name
        self.entries = tuple(entries)
        self._exact: dict[str, str] = {}
        self._folded: dict[str, str] = {}
        for entry in entries:
            if entry.regex:
                continue
            if entry.key == entry.key.lower():
                self._folded[entry.key] = entry.replacement
            else:
                self._exact[entry.key] = entry.replacement
        keys = sorted({*self._exact, *self._folded}, key=len, reverse=True)
        self._plain = (
            re.compile(
                r"(?<!\w)(?:" + "|".join(re.escape(k) for k in keys) + r")(?!\w)", re.IGNORECASE
            )
            if keys
            else None
        )
        self._regexes = [
            (_compile(entry, name), entry.replacement) for entry in entries if entry.regex
        ]
        # Checked here, so a bad back-reference fails when the file is read, not mid-plan.
        regex_entries = [e for e in entries if e.regex]
        for (pattern, replacement), entry in zip(self._regexes, regex_entries, strict=True):
            try:
                _check_template(pattern, replacement)
            except re.error as exc:
                raise InputError(
                    f"{name} line {entry.line}: bad replacement {replacement!r}: {exc}"
                ) from exc
        self._regex_lines = [e.line for e in regex_entries]

    @property
    def digest(self) -> str:
        """What identifies the lexicon's effect: part of a job's fingerprint, so a changed
        lexicon makes a new job (whose unchanged chunks come from the cache)."""
        rows = [[e.key, e.replacement, e.regex, e.flags] for e in self.entries]
        return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()

    @property
    def has_phonemes(self) -> bool:
        return any(entry.phonemes for entry in self.entries)

    def check_engine(self, engine_name: str, takes_phonemes: bool) -> None:
        """Refuse phoneme entries for an engine that would read the brackets aloud."""
        if takes_phonemes:
            return
        for entry in self.entries:
            if entry.phonemes:
                raise InputError(
                    f"{self.name} line {entry.line}: gives phonemes ([[...]]) but engine "
                    f"{engine_name} does not take them; give a spelling instead"
                )

    def _plain_word(self, match: re.Match[str]) -> str:
        word = match.group(0)
        if word in self._exact:
            return self._exact[word]
        return self._folded.get(word.lower(), word)

    def apply(self, text: str) -> str:
        """`text` with every entry applied: plain words first, then regexes in order."""
        if self._plain is not None:
            text = self._plain.sub(self._plain_word, text)
        for (pattern, replacement), line in zip(self._regexes, self._regex_lines, strict=True):
            try:
                text = pattern.sub(replacement, text)
            except re.error as exc:  # a bad escape in the template shows only when used
                raise InputError(
                    f"{self.name} line {line}: bad replacement {replacement!r}: {exc}"
                ) from exc
        return " ".join(text.split())


def _check_template(pattern: re.Pattern[str], replacement: str) -> None:
    """Raise re.error if `replacement` names a group the pattern does not have."""
    groups = {str(i) for i in range(pattern.groups + 1)} | set(pattern.groupindex)
    for ref in re.findall(r"\\(\d+)|\\g<([^>]*)>", replacement):
        name = ref[0] or ref[1]
        if name not in groups:
            raise re.error(f"no group {name}")


def _compile(entry: Entry, name: str) -> re.Pattern[str]:
    flags = 0
    for flag in entry.flags:
        if flag not in _FLAGS:
            raise InputError(f"{name} line {entry.line}: unknown regex flag {flag!r} (use i)")
        flags |= _FLAGS[flag]
    try:
        return re.compile(entry.key, flags)
    except re.error as exc:
        raise InputError(f"{name} line {entry.line}: bad regex /{entry.key}/: {exc}") from exc


def _regex_line(text: str, number: int, name: str) -> Entry:
    index = 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == "/":
            break
        index += 1
    else:
        raise InputError(f"{name} line {number}: regex has no closing slash: {text[:60]!r}")
    pattern, rest = text[1:index], text[index + 1 :]
    flags, sep, replacement = rest.partition("=")
    if not sep:
        raise InputError(f"{name} line {number}: expected `/regex/flags = replacement`")
    if not pattern:
        raise InputError(f"{name} line {number}: empty regex")
    return Entry(number, pattern, replacement.strip(), regex=True, flags=flags.strip())


def _check_replacement(entry: Entry, name: str) -> None:
    if not entry.replacement:
        raise InputError(f"{name} line {entry.line}: {entry.key!r} has an empty replacement")
    if entry.replacement.count("[[") != entry.replacement.count("]]") or (
        "[[" in entry.replacement and not _PHONEMES.search(entry.replacement)
    ):
        raise InputError(f"{name} line {entry.line}: unbalanced phoneme brackets [[ ]]")


def parse_lexicon(text: str, *, name: str = "lexicon") -> Lexicon:
    """Parse lexicon text (the format above); InputError naming the first bad line."""
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("/"):
            entry = _regex_line(line, number, name)
        else:
            key, sep, replacement = line.partition(" = ")
            if not sep:
                raise InputError(f"{name} line {number}: expected `word = replacement`")
            entry = Entry(number, " ".join(key.split()), replacement.strip())
            if not entry.key:
                raise InputError(f"{name} line {number}: empty word before ' = '")
            if entry.key in seen:
                raise InputError(
                    f"{name} line {number}: {entry.key!r} is already given on line "
                    f"{seen[entry.key]}"
                )
            seen[entry.key] = number
        _check_replacement(entry, name)
        entries.append(entry)
        if len(entries) > MAX_ENTRIES:
            raise InputError(f"{name}: more than {MAX_ENTRIES} entries")
    return Lexicon(entries, name=name)


def lexicon_from_mapping(mapping: Mapping[str, str], *, name: str = "lexicon") -> Lexicon:
    """A lexicon given as {word: replacement} (the API's JSON form); keys like /re/i are
    regex entries, as in a file. Entry numbers count from 1 in the mapping's order."""
    lines = []
    for key, value in mapping.items():
        if "\n" in key or "\n" in value:
            raise InputError(f"{name}: entry {key[:40]!r} spans lines")
        lines.append(f"{key} = {value}")
    return parse_lexicon("\n".join(lines), name=name)


def load_lexicon(path: Path) -> Lexicon:
    """Read and parse a lexicon file; InputError if it cannot be read or a line is bad."""
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"lexicon {path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"lexicon {path}: not UTF-8 text") from exc
    except OSError as exc:
        raise InputError(f"lexicon {path}: cannot be read ({exc.strerror})") from exc
    return parse_lexicon(text, name=f"lexicon {path}")
