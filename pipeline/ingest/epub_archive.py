"""An EPUB's zip archive, opened defensively, and the hardened XML parser for what is in it.

An EPUB is a file from anyone: a publisher's back-list, a download, an upload to the API.
Everything here assumes it may be hostile. The archive's directory is checked before a
byte is inflated (member count, declared sizes, compression ratios, names that climb out
of the archive, symlinks, encrypted members), each read is capped again at the declared
size, and XML is parsed with no DTD loading, no entity expansion and no network: a
document that declares entities at all (the only way to a billion-laughs bomb or an
external-entity read) is refused outright rather than parsed carefully.

zipfile + lxml rather than ebooklib: ebooklib is AGPL-3.0 (this project is Apache-2.0),
reads every member into memory with no size checks, and parses with lxml's defaults.
"""

from __future__ import annotations

import html.entities
import io
import posixpath
import re
import stat
import zipfile
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from lxml import etree

from pipeline.errors import InputError

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 1 << 30  # uncompressed, all members: a 1,000-page illustrated book is ~300 MB
MAX_MEMBER_BYTES = 256 << 20
MAX_RATIO = 200  # deflated text is 3-20x smaller; a bomb is ~1000x
RATIO_FLOOR = 1 << 20  # small members may compress well (a blank page); only big ones count
MAX_XML_BYTES = 64 << 20
EPUB_MIMETYPE = b"application/epub+zip"

_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_INTERNAL_SUBSET = re.compile(rb"<!DOCTYPE[^>\[]*\[", re.IGNORECASE)
_NAMED_REF = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_XML_ENTITIES = {b"amp", b"lt", b"gt", b"quot", b"apos"}


class EpubError(InputError):
    """The EPUB cannot be read; the message names the problem."""


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _unsafe_name(name: str) -> str | None:
    """Why a member name is refused, or None if it is safe."""
    if "\x00" in name or "\\" in name:
        return "a backslash or NUL in it"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "'..' in it (path traversal)"
    return None


class EpubArchive:
    """The checked members of an EPUB; read() inflates one, capped."""

    def __init__(self, zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo]) -> None:
        self._zip = zf
        self._infos = infos

    @classmethod
    def open(cls, data: bytes) -> EpubArchive:
        """Check the archive's directory; raise EpubError for anything hostile or broken."""

        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
            raise EpubError("is not an EPUB (not a zip archive)") from exc
        infos_list = zf.infolist()
        if len(infos_list) > MAX_MEMBERS:
            raise EpubError(f"has {len(infos_list)} files in it, over the limit of {MAX_MEMBERS}")
        infos: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos_list:
            name = info.filename
            why = _unsafe_name(name)
            if why is not None:
                raise EpubError(f"has a member named {name[:80]!r} with {why}; refused")
            if _is_symlink(info):
                raise EpubError(f"has a symbolic link {name[:80]!r} in it; refused")
            if info.flag_bits & 0x1:
                raise EpubError(f"has a password-encrypted member {name[:80]!r}; refused")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise EpubError(f"member {name[:80]!r} uses an unsupported compression method")
            if name in infos:
                raise EpubError(f"has two members named {name[:80]!r}")
            if info.file_size > MAX_MEMBER_BYTES:
                raise EpubError(
                    f"member {name[:80]!r} inflates to {info.file_size} bytes, over the "
                    f"{MAX_MEMBER_BYTES >> 20} MB limit (a zip bomb?)"
                )
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(
                info.compress_size, 1
            ):
                raise EpubError(
                    f"member {name[:80]!r} is compressed {info.file_size // max(info.compress_size, 1)}"
                    f":1, over the {MAX_RATIO}:1 limit (a zip bomb?)"
                )
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise EpubError(
                    f"inflates to over {MAX_TOTAL_BYTES >> 20} MB in all, over the limit (a zip bomb?)"
                )
            if not name.endswith("/"):
                infos[name] = info
        archive = cls(zf, infos)
        if "mimetype" in infos:
            kind = archive.read("mimetype").strip()
            if kind != EPUB_MIMETYPE:
                raise EpubError(
                    f"is not an EPUB (its mimetype file says {kind[:60].decode('latin-1')!r})"
                )
        return archive

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def read(self, name: str, *, limit: int = MAX_MEMBER_BYTES) -> bytes:
        """One member's bytes; a member over `limit` or that fails its CRC is refused."""
        info = self._infos.get(name)
        if info is None:
            raise EpubError(f"is missing {name} (the package lists it)")
        if info.file_size > limit:
            raise EpubError(f"{name} is {info.file_size} bytes, over the {limit >> 20} MB limit")
        try:
            with self._zip.open(info) as member:
                # The directory's size may lie; zipfile stops at it and checks the CRC.
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise EpubError(f"{name} is corrupt in the archive ({exc})") from exc
        if len(data) > limit:
            raise EpubError(f"{name} is over the {limit >> 20} MB limit")
        return data

    def xml(self, name: str, *, recover: bool = False) -> etree._Element:
        """A member parsed as XML with parse_xml's protections."""
        return parse_xml(self.read(name, limit=MAX_XML_BYTES), name, recover=recover)


def resolve_href(base: str, href: str) -> tuple[str, str | None]:
    """An href inside the archive, relative to the member `base`: (member path, fragment).

    A reference that climbs out of the archive or is absolute is refused, not clamped.
    """

    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        raise EpubError(f"{base} refers to {href[:80]!r}, outside the book")
    path = unquote(parts.path)
    if path.startswith("/"):
        raise EpubError(f"{base} refers to the absolute path {path[:80]!r}")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(base), path)) if path else base
    if joined == ".." or joined.startswith("../"):
        raise EpubError(f"{base} refers to {href[:80]!r}, outside the archive (path traversal)")
    return joined, unquote(parts.fragment) or None


def _numeric_refs(data: bytes) -> bytes:
    """HTML named character references (&nbsp;) as numeric ones: XHTML in EPUBs uses them,
    and XML without a loaded DTD knows only the five predefined ones."""

    def replace(match: re.Match[bytes]) -> bytes:
        name = match.group(1)
        if name in _XML_ENTITIES:
            return match.group(0)
        text = html.entities.html5.get(name.decode("ascii") + ";")
        if text is None:
            return match.group(0)
        return b"".join(b"&#%d;" % ord(ch) for ch in text)

    return _NAMED_REF.sub(replace, data)


def _declares_entities(data: bytes) -> bool:
    """Whether the document has an <!ENTITY> or a DOCTYPE internal subset, in UTF-8 or
    (EPUB allows it) UTF-16, where a byte scan for ASCII would see NULs between letters."""
    if _ENTITY_DECL.search(data) or _INTERNAL_SUBSET.search(data):
        return True
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                text = data.decode(encoding).encode("utf-8", "replace")
            except UnicodeDecodeError:
                continue
            if _ENTITY_DECL.search(text) or _INTERNAL_SUBSET.search(text):
                return True
    return False


def parse_xml(data: bytes, name: str, *, recover: bool = False) -> etree._Element:
    """Parse XML that may be hostile: entity declarations refused, no DTD, no network.

    `recover` lets libxml2 mend sloppy XHTML (an unclosed tag) instead of failing the
    book; package files (container, OPF, NCX) are parsed strictly.
    """
    if _declares_entities(data):
        raise EpubError(
            f"{name} declares XML entities (a DTD internal subset); refused: it is how "
            "billion-laughs and external-entity attacks work, and no real EPUB needs one"
        )
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )
    try:
        root = etree.fromstring(_numeric_refs(data), parser)
    except etree.XMLSyntaxError as exc:
        raise EpubError(f"{name} is not well-formed XML ({exc.msg})") from exc
    if root is None:
        raise EpubError(f"{name} is empty or not XML")
    dtd = root.getroottree().docinfo.internalDTD  # also there for a bare external DOCTYPE
    if dtd is not None and (list(dtd.entities()) or list(dtd.elements())):
        # the byte scan's backstop: declarations in an encoding it did not foresee
        raise EpubError(f"{name} declares XML entities (a DTD internal subset); refused")
    return root
