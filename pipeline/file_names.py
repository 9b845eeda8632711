"""Catalogue items' file names, rendered from a template and checked before a job exists.

A name is relative to the job's items/ folder, in the local folder and in S3 alike. It
must stay inside that folder and mean the same file everywhere: no '..', nothing
absolute, no backslashes, no control or invisible characters, none of the characters
Windows refuses, no hidden files, and one name per item even on a case-insensitive file
system. Sub-folders ('/') are allowed only when the job asks for them.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import InputError

NAME_FIELDS = ("id", "slug", "index", "ext")
# Windows refuses these in file names; a name that works on one machine only is a trap.
UNPORTABLE = set('<>:"|?*')
# Windows refuses these as file names, in any case and with any extension (CON, nul.mp3).
RESERVED = re.compile(r"(?:CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9])(?:\..*)?", re.IGNORECASE)
MAX_SEGMENT_BYTES = 255
# A whole name (sub-folders included); S3 keys stop at 1024 bytes, with the job's folder.
MAX_NAME_BYTES = 500
# Widths and precisions in a template's format specs ({index:04d}, {slug:.20}): checked
# before formatting, so "{index:50000000}" is refused instead of building 50 MB.
MAX_FORMAT_WIDTH = MAX_SEGMENT_BYTES
_SPEC_NUMBER = re.compile(r"\d+")


def slugify(text: str, *, fallback: str, limit: int = 60) -> str:
    """A file-name-safe ASCII slug; `fallback` when nothing Latin is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].strip("-")
    if RESERVED.fullmatch(slug):
        return f"{slug}_"  # 'con' is a device on Windows; 'con_' is a file
    return slug or fallback


@dataclass(frozen=True)
class NamedItem:
    """What a name is made from: the item's id and where it was read ("line 12")."""

    item_id: str
    where: str


def check_template(template: str) -> None:
    """Refuse a template with fields other than {id} {slug} {index} {ext}, or bad braces."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"item name template {template!r}: {exc}") from exc
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in NAME_FIELDS or conversion is not None:
            raise InputError(
                f"item name template {template!r}: unknown field {{{name}}} "
                f"(use {', '.join('{' + f + '}' for f in NAME_FIELDS)})"
            )
        if spec and "{" in spec:
            raise InputError(
                f"item name template {template!r}: {{{name}}} has a nested field in its "
                "format spec; give the width as a number"
            )
        widths = [int(n) for n in _SPEC_NUMBER.findall(spec or "") if len(n) <= 6]
        if len(widths) < len(_SPEC_NUMBER.findall(spec or "")) or any(
            w > MAX_FORMAT_WIDTH for w in widths
        ):
            raise InputError(
                f"item name template {template!r}: {{{name}:{spec}}} has a width or "
                f"precision over {MAX_FORMAT_WIDTH}"
            )
    if not any(name for _, name, _, _ in parts):
        raise InputError(
            f"item name template {template!r} has no field, so every item would get the "
            "same name; use {id}, {slug} or {index}"
        )


def _problem(name: str, ext: str, subfolders: bool) -> str | None:
    """Why `name` is not a safe relative file name, or None."""
    if not name:
        return "is empty"
    if "\\" in name:
        return "has a backslash"
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        return "has control or invisible characters"
    if bad := sorted(UNPORTABLE & set(name)):
        return f"has {''.join(bad)!r}, which Windows does not allow in file names"
    if "/" in name and not subfolders:
        return "has '/' (set item_subfolders to allow sub-folders)"
    if name.startswith("/"):
        return "is an absolute path"
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            return f"has a {segment or 'empty'!r} path part"
        if segment.startswith("."):
            return f"would be a hidden file ({segment!r} starts with '.')"
        if segment != segment.strip() or segment.endswith("."):
            return f"has a part that starts or ends with a space or dot ({segment!r})"
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            return f"has a part over {MAX_SEGMENT_BYTES} bytes"
        if RESERVED.fullmatch(segment):
            return f"has {segment!r}, a device name reserved by Windows"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"is over {MAX_NAME_BYTES} bytes"
    if not name.endswith(f".{ext}"):
        return f"does not end in .{ext} (the output format)"
    return None


def item_file_names(
    items: Sequence[NamedItem], *, template: str, ext: str, subfolders: bool = False
) -> list[str]:
    """Each item's file name under items/, in order; InputError naming the row (and, for
    a collision, both rows) when a name is unsafe or taken."""
    check_template(template)
    names: list[str] = []
    taken: dict[str, str] = {}  # casefolded name -> where
    folders: dict[str, str] = {}  # casefolded folder -> where (a file may not be one)
    for index, item in enumerate(items, start=1):
        fields: dict[str, object] = {
            "id": item.item_id,
            "slug": slugify(item.item_id, fallback=f"item-{index}"),
            "index": index,
            "ext": ext,
        }
        try:
            name = template.format(**fields)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"{item.where}: item name template {template!r} cannot be filled ({exc})"
            ) from exc
        if problem := _problem(name, ext, subfolders):
            hint = "" if "{slug}" in template else "; {slug} in the template makes safe names"
            raise InputError(f"{item.where}: file name {name!r} {problem}{hint}")
        key = name.casefold()
        clash = taken.get(key) or folders.get(key)
        parents = ["/".join(key.split("/")[:n]) for n in range(1, key.count("/") + 1)]
        clash = clash or next((taken[p] for p in parents if p in taken), None)
        if clash is not None:
            raise InputError(
                f"{item.where}: file name {name!r} is also the name of {clash}'s file "
                "(names must differ in more than letter case)"
            )
        taken[key] = item.where
        for parent in parents:
            folders.setdefault(parent, item.where)
        names.append(name)
    return names
