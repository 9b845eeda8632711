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

Regex entries use RE2 syntax (Python's, less backreferences and lookaround, which are
refused): matching takes time linear in the text, so no entry can hang a process. Its
\\w, \\b and \\d are ASCII; write [\\pL\\pN_] for a letter or digit of any script. At
most 1,000 regex entries.

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
from typing import Any

import re2

from pipeline.errors import InputError

_PHONEMES = re.compile(r"\[\[[^\[\]]+\]\]")
_FLAGS = {"i"}
MAX_ENTRIES = 100_000
# Each regex entry is one pass over every chunk: linear, but a hundred thousand of them
# would still keep a worker busy for hours.
MAX_REGEX_ENTRIES = 1000
# Plain entries are matched token by token: a word (a run of \w), a run of white space
# or any other single character. Each pattern is linear, so is every use of it.
_TOKEN = re.compile(r"\w+|\s+|.", re.DOTALL)
_WORD = re.compile(r"\w")
_END = ""  # the trie key that marks a whole entry (no token is empty)
# A replacement's parts: \g<name>, \g<1>, \1 to \99, or another escape.
_TEMPLATE = re.compile(r"\\(?:g<([^>]*)>|([1-9][0-9]?)|(.?))", re.DOTALL)
_ESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}


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


@dataclass(frozen=True)
class _RegexEntry:
    pattern: Any  # a compiled re2 pattern (the bindings carry no types)
    template: tuple[str | int, ...]  # literal text and group numbers

    def replace(self, match: Any) -> str:
        return "".join(
            part if isinstance(part, str) else (match.group(part) or "") for part in self.template
        )


class Lexicon:
    """Parsed entries, compiled once; `apply` rewrites one chunk's text.

    Regex entries are compiled with RE2, whose matching time is linear in the text: no
    pattern can backtrack for ever (a ReDoS), in the API or in a worker. RE2 refuses
    what it cannot match in linear time (backreferences, lookaround), and its \\w, \\b
    and \\d are ASCII; [\\pL\\pN_] is a letter or digit of any script.
    """

    def __init__(self, entries: list[Entry], *, name: str = "lexicon") -> None:
        self.name = name
        self.entries = tuple(entries)
        self._exact: dict[str, Any] = {}  # token tries: token -> child, _END -> replacement
        self._folded: dict[str, Any] = {}
        for entry in entries:
            if entry.regex:
                continue
            folded = entry.key == entry.key.lower()
            node = self._folded if folded else self._exact
            for token in _TOKEN.findall(entry.key):
                node = node.setdefault(token, {})
            node[_END] = entry.replacement
        self._regexes = [_compile(entry, name) for entry in entries if entry.regex]

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

    def _apply_plain(self, text: str) -> str:
        """Plain entries in one pass: at each place a match may start (not inside a word)
        the longest entry that ends where a word does wins; a key with a capital matches
        only its own spelling, a lowercase key any case. Time: the tokens times the depth
        of the tries they walk, never a search over every key."""
        tokens = _TOKEN.findall(text)
        words = [_WORD.match(token) is not None for token in tokens]
        out: list[str] = []
        index, count = 0, len(tokens)
        while index < count:
            best: tuple[int, str] | None = None
            if index == 0 or not words[index - 1]:
                exact: dict[str, Any] | None = self._exact
                folded: dict[str, Any] | None = self._folded
                end = index
                while end < count and (exact or folded):
                    token = tokens[end]
                    exact = exact.get(token) if exact else None
                    folded = folded.get(token.lower()) if folded else None
                    end += 1
                    if end < count and words[end]:
                        continue  # the next token would continue the word
                    if exact and _END in exact:
                        best = (end, exact[_END])
                    elif folded and _END in folded:
                        best = (end, folded[_END])
            if best is None:
                out.append(tokens[index])
                index += 1
            else:
                index, replacement = best
                out.append(replacement)
        return "".join(out)

    def apply(self, text: str) -> str:
        """`text` with every entry applied: plain words first, then regexes in order."""
        if self._exact or self._folded:
            text = self._apply_plain(text)
        for entry in self._regexes:
            text = entry.pattern.sub(entry.replace, text)
        return " ".join(text.split())


def _template(pattern: Any, replacement: str) -> tuple[str | int, ...]:
    """`replacement` as literal parts and group numbers; ValueError naming a group the
    pattern does not have, or an escape that means nothing."""
    parts: list[str | int] = []
    last = 0
    for match in _TEMPLATE.finditer(replacement):
        parts.append(replacement[last : match.start()])
        last = match.end()
        name, number, escape = match.groups()
        if name is not None or number is not None:
            ref = name if name is not None else number
            group = int(ref) if ref.isdigit() else pattern.groupindex.get(ref)
            if group is None or not 0 <= group <= pattern.groups:
                raise ValueError(f"no group {ref}")
            parts.append(group)
        elif escape in _ESCAPES:
            parts.append(_ESCAPES[escape])
        elif not escape or (escape.isascii() and escape.isalnum()):
            raise ValueError(f"bad escape \\{escape}" if escape else "bad escape (at the end)")
        else:
            parts.append(match.group(0))  # \- and the like stay as written, as in Python
    parts.append(replacement[last:])
    return tuple(part for part in parts if part != "")


def _re2_problem(detail: str) -> str:
    """RE2's reason, and what it means for a lexicon's author."""
    if re.search(r"invalid escape sequence: \\[1-9]", detail):
        return f"{detail}; backreferences cannot be matched in linear time (RE2 syntax)"
    if "(?=" in detail or "(?!" in detail or "(?<=" in detail or "(?<!" in detail:
        return f"{detail}; lookaround cannot be matched in linear time (RE2 syntax)"
    return f"{detail} (lexicon regexes use RE2 syntax)"


def _compile(entry: Entry, name: str) -> _RegexEntry:
    options = re2.Options()
    options.log_errors = False
    for flag in entry.flags:
        if flag not in _FLAGS:
            raise InputError(f"{name} line {entry.line}: unknown regex flag {flag!r} (use i)")
        options.case_sensitive = False
    try:
        pattern = re2.compile(entry.key, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "invalid"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise InputError(
            f"{name} line {entry.line}: bad regex /{entry.key}/: {_re2_problem(str(detail))}"
        ) from exc
    # Checked here, so a bad group reference fails when the file is read, not mid-plan.
    try:
        template = _template(pattern, entry.replacement)
    except ValueError as exc:
        raise InputError(
            f"{name} line {entry.line}: bad replacement {entry.replacement!r}: {exc}"
        ) from exc
    return _RegexEntry(pattern, template)


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
    regexes = 0
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
        regexes += entry.regex
        if regexes > MAX_REGEX_ENTRIES:
            raise InputError(f"{name} line {number}: more than {MAX_REGEX_ENTRIES} regex entries")
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
