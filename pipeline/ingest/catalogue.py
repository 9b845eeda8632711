"""Catalogue readers: CSV and JSONL files of items, one output file per row.

Each row has an id (it names the item's file), a text, and optionally a voice (an empty
cell means the job's voice). Every row is checked before anything is created; the first
problem found is reported with its line number, so a 5,000-row file is fixed in one
edit rather than found out row by row during rendering.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.ingest.document import Chapter, Document

MAX_VOICE_CHARS = 1000  # the width of items.voice
# A catalogue record is flat: its values are strings. Deeper nesting is refused before
# parsing, since the json module recurses once per level (a line of 100,000 `[` was a
# RecursionError, and a 500 from the API).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_ONE_KIND = str.maketrans("{}", "[]")


@dataclass(frozen=True)
class CatalogueFormat:
    """Which columns hold what, and how large a catalogue may be."""

    id_column: str = "id"
    text_column: str = "text"
    voice_column: str = "voice"
    max_items: int = 100_000
    max_item_chars: int = 20_000

    @classmethod
    def from_settings(cls, settings: Settings) -> CatalogueFormat:
        return cls(
            id_column=settings.catalogue_id_column,
            text_column=settings.catalogue_text_column,
            voice_column=settings.catalogue_voice_column,
            max_items=settings.catalogue_max_items,
            max_item_chars=settings.catalogue_max_item_chars,
        )


@dataclass(frozen=True)
class CatalogueRow:
    """One row as read, before it is checked: where it starts and its three values."""

    where: str  # "line 12" (files) or "items[11]" (API requests)
    id: object
    text: object
    voice: object = None


def paragraphs_of(text: str) -> tuple[str, ...]:
    """Blank lines separate paragraphs; whitespace inside one is folded to single spaces."""
    return tuple(" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip())


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def _string(value: object, column: str, where: str) -> str:
    if isinstance(value, str):
        return value
    kind = {bool: "a boolean", int: "a number", float: "a number", type(None): "null"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )
    raise InputError(f'{where}: {column!r} is {kind}, not a string (quote it: "...")')


def build_items(rows: Iterable[CatalogueRow], fmt: CatalogueFormat, *, title: str) -> Document:
    """Check every row and make the catalogue Document: one item per row, in order.

    Refused, naming the row: a missing or empty id, an id seen before, a text with no
    words or over the size limit, values that are not strings, a voice that is too long
    or holds control characters, and more rows than the limit.
    """
    seen: dict[str, str] = {}
    items: list[Chapter] = []
    for row in rows:
        if len(items) >= fmt.max_items:
            raise InputError(f"{row.where}: more than {fmt.max_items} items (the limit)")
        item_id = " ".join(_string(row.id, fmt.id_column, row.where).split())
        if not item_id:
            raise InputError(f"{row.where}: empty {fmt.id_column!r}")
        if len(item_id) > 200:
            raise InputError(f"{row.where}: {fmt.id_column!r} is over 200 characters")
        if _has_control(item_id):
            raise InputError(f"{row.where}: {fmt.id_column!r} has control characters")
        if item_id in seen:
            raise InputError(
                f"{row.where}: {fmt.id_column!r} {item_id!r} repeats the id of {seen[item_id]}"
            )
        seen[item_id] = row.where
        text = _string(row.text, fmt.text_column, row.where)
        if len(text) > fmt.max_item_chars:
            raise InputError(
                f"{row.where}: {fmt.text_column!r} of {item_id!r} is {len(text)} characters, "
                f"over the {fmt.max_item_chars} limit"
            )
        paragraphs = paragraphs_of(text)
        if not any(ch.isalnum() for p in paragraphs for ch in p):
            raise InputError(f"{row.where}: {fmt.text_column!r} of {item_id!r} has no words")
        voice: str | None = None
        if row.voice is not None:
            voice = _string(row.voice, fmt.voice_column, row.where).strip() or None
        if voice is not None and (len(voice) > MAX_VOICE_CHARS or _has_control(voice)):
            raise InputError(
                f"{row.where}: {fmt.voice_column!r} is over {MAX_VOICE_CHARS} characters "
                "or has control characters"
            )
        items.append(
            Chapter(
                title=item_id,
                paragraphs=paragraphs,
                heading=False,
                item_id=item_id,
                voice=voice,
                where=row.where,
            )
        )
    if not items:
        raise InputError("has no items (only a header, or empty lines)")
    return Document(title=title, chapters=tuple(items), kind="catalogue")


def _csv_rows(text: str, fmt: CatalogueFormat) -> Iterator[CatalogueRow]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InputError("line 1: no header row (the first line must name the columns)")
        names = [cell.strip() for cell in header]
        for column in (fmt.id_column, fmt.text_column):
            if column not in names:
                raise InputError(
                    f"line 1: no {column!r} column (the header has {', '.join(map(repr, names))}"
                    "; name the columns with --id-column/--text-column)"
                )
        doubled = next((n for n in names if n and names.count(n) > 1), None)
        if doubled is not None:
            raise InputError(f"line 1: the header names column {doubled!r} twice")
        at_id, at_text = names.index(fmt.id_column), names.index(fmt.text_column)
        at_voice = names.index(fmt.voice_column) if fmt.voice_column in names else None
        start = reader.line_num + 1
        for cells in reader:
            where = f"line {start}"
            start = reader.line_num + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            if len(cells) != len(names):
                raise InputError(
                    f"{where}: {len(cells)} fields where the header has {len(names)} "
                    "(a comma inside a text needs the text in double quotes)"
                )
            yield CatalogueRow(
                where,
                cells[at_id],
                cells[at_text],
                cells[at_voice] if at_voice is not None else None,
            )
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: malformed CSV ({exc})") from exc


def parse_csv(text: str, fmt: CatalogueFormat, *, title: str) -> Document:
    """A CSV catalogue: comma-separated, double-quoted fields, a header row first."""
    return build_items(_csv_rows(text, fmt), fmt, title=title)


def _nested_too_deep(line: str) -> bool:
    """Whether the JSON on `line` nests arrays and objects more than MAX_JSON_DEPTH deep
    (or leaves more than that open). Each pass of `replace` removes one level of empty
    pairs; all of it runs in C, so a 60 MB line takes a second, not a minute."""
    if line.count("[") + line.count("{") <= MAX_JSON_DEPTH:
        return False
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", line)).translate(_ONE_KIND)
    for _ in range(MAX_JSON_DEPTH):
        shorter = brackets.replace("[]", "")
        if shorter == brackets:
            break
        brackets = shorter
    return "[]" in brackets or brackets.count("[") > MAX_JSON_DEPTH


def _jsonl_rows(text: str, fmt: CatalogueFormat) -> Iterator[CatalogueRow]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        if _nested_too_deep(line):
            raise InputError(
                f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep "
                "(a catalogue record is one object of strings)"
            )
        try:
            record: Any = json.loads(line)
        except RecursionError as exc:  # not reached after the depth check; kept as a guard
            raise InputError(f"{where}: JSON nested too deeply") from exc
        except ValueError as exc:
            message = getattr(exc, "msg", str(exc))
            column = getattr(exc, "colno", None)
            at = f" at column {column}" if column else ""
            raise InputError(f"{where}: invalid JSON ({message}{at})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{where}: not a JSON object (each line must be {{...}})")
        for column in (fmt.id_column, fmt.text_column):
            if column not in record:
                raise InputError(f"{where}: no {column!r} field")
        yield CatalogueRow(
            where, record[fmt.id_column], record[fmt.text_column], record.get(fmt.voice_column)
        )


def parse_jsonl(text: str, fmt: CatalogueFormat, *, title: str) -> Document:
    """A JSON Lines catalogue: one object per line, blank lines ignored."""
    return build_items(_jsonl_rows(text, fmt), fmt, title=title)


CATALOGUE_READERS = {".csv": parse_csv, ".jsonl": parse_jsonl, ".ndjson": parse_jsonl}
