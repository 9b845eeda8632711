"""An EPUB's package: container.xml -> the OPF (metadata, manifest, spine, guide), the
EPUB 3 navigation document (toc, landmarks) and the EPUB 2 NCX, and the DRM check."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from pipeline.ingest.epub_archive import EpubArchive, EpubError, resolve_href

CONTAINER = "META-INF/container.xml"
ENCRYPTION = "META-INF/encryption.xml"
OPS_NS = "http://www.idpf.org/2007/ops"
# Font obfuscation (IDPF and Adobe's) scrambles embedded fonts only; the text is readable.
FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
XHTML_TYPES = {"application/xhtml+xml", "text/html", "application/x-dtbook+xml"}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/svg+xml"}


def local(tag: object) -> str:
    """An element's name without its namespace ('' for comments and the like)."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element if local(child.tag) == name]


def descendants(element: etree._Element, name: str) -> list[etree._Element]:
    return [node for node in element.iter() if local(node.tag) == name]


def epub_types(element: etree._Element) -> set[str]:
    """The element's epub:type tokens and DPUB-ARIA roles (doc-footnote -> footnote)."""
    raw = element.get(f"{{{OPS_NS}}}type") or element.get("epub:type") or ""
    tokens = set(raw.split())
    for role in (element.get("role") or "").split():
        tokens.add(role.removeprefix("doc-"))
    return tokens


def text_of(element: etree._Element) -> str:
    return " ".join("".join(element.itertext()).split())


@dataclass(frozen=True)
class ManifestItem:
    id: str
    path: str  # the member's path in the archive
    media_type: str
    properties: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SpineItem:
    item: ManifestItem
    linear: bool


@dataclass(frozen=True)
class NavEntry:
    """One entry of the table of contents, flattened in reading order."""

    path: str
    fragment: str | None
    title: str
    depth: int  # 0 for top-level entries


@dataclass(frozen=True)
class Package:
    opf_path: str
    version: str
    title: str | None
    authors: tuple[str, ...]
    metadata: dict[str, str]
    spine: tuple[SpineItem, ...]
    toc: tuple[NavEntry, ...]
    # Structural types the book itself gives its files: landmarks (EPUB 3), guide (EPUB 2).
    file_types: dict[str, set[str]] = field(default_factory=dict)
    cover_path: str | None = None
    nav_path: str | None = None


def _opf_path(archive: EpubArchive) -> str:
    if CONTAINER not in archive:
        raise EpubError(f"is not a valid EPUB: {CONTAINER} is missing")
    root = archive.xml(CONTAINER)
    for rootfile in descendants(root, "rootfile"):
        full_path = rootfile.get("full-path")
        if full_path and rootfile.get("media-type", "application/oebps-package+xml").endswith(
            "package+xml"
        ):
            path, _ = resolve_href("", full_path)
            if path not in archive:
                raise EpubError(f"is missing its package file {path} (container.xml names it)")
            return path
    raise EpubError(f"is not a valid EPUB: {CONTAINER} names no package (OPF) file")


def _check_encryption(archive: EpubArchive) -> None:
    if ENCRYPTION not in archive:
        return
    root = archive.xml(ENCRYPTION)
    for data in descendants(root, "EncryptedData"):
        methods = descendants(data, "EncryptionMethod")
        algorithm = methods[0].get("Algorithm", "") if methods else ""
        if algorithm in FONT_OBFUSCATION:
            continue
        refs = descendants(data, "CipherReference")
        target = refs[0].get("URI", "?") if refs else "?"
        raise EpubError(
            f"is DRM-protected (META-INF/encryption.xml encrypts {target[:80]}); "
            "only DRM-free EPUBs can be read"
        )


def _metadata(opf: etree._Element) -> tuple[str | None, tuple[str, ...], dict[str, str], str]:
    meta_el = next(iter(children(opf, "metadata")), None)
    title: str | None = None
    authors: list[str] = []
    metadata: dict[str, str] = {}
    cover_id = ""
    if meta_el is None:
        return None, (), metadata, cover_id
    for node in meta_el.iter():
        name = local(node.tag)
        value = text_of(node)
        if name == "title" and value and title is None:
            title = value
        elif name == "creator" and value:
            authors.append(value)
        elif name in ("language", "publisher", "identifier", "date", "rights", "description"):
            if value and name not in metadata:
                metadata[name] = value[:2000]
        elif name == "meta" and node.get("name") == "cover":
            cover_id = node.get("content", "")
    return title, tuple(authors), metadata, cover_id


def _manifest(opf: etree._Element, opf_path: str) -> dict[str, ManifestItem]:
    items: dict[str, ManifestItem] = {}
    for manifest in children(opf, "manifest"):
        for node in children(manifest, "item"):
            item_id, href = node.get("id"), node.get("href")
            if not item_id or not href:
                continue
            path, _ = resolve_href(opf_path, href)
            items[item_id] = ManifestItem(
                item_id,
                path,
                (node.get("media-type") or "").lower(),
                frozenset((node.get("properties") or "").split()),
            )
    return items


def _nav_list(
    ol: etree._Element, base: str, depth: int, out: list[NavEntry], spine_paths: set[str]
) -> None:
    for li in children(ol, "li"):
        # An entry is an <a> (a link) or a <span> (a heading for the entries under it).
        label = next((c for c in li if local(c.tag) in ("a", "span")), None)
        href = label.get("href") if label is not None and local(label.tag) == "a" else None
        if href and label is not None:
            path, fragment = resolve_href(base, href)
            title = text_of(label)
            if title and path in spine_paths:
                out.append(NavEntry(path, fragment, title, depth))
        for sub in children(li, "ol"):
            _nav_list(sub, base, depth + 1, out, spine_paths)


def _read_nav(
    archive: EpubArchive, nav_path: str, spine_paths: set[str]
) -> tuple[list[NavEntry], dict[str, set[str]]]:
    root = archive.xml(nav_path, recover=True)
    toc: list[NavEntry] = []
    types: dict[str, set[str]] = {}
    for nav in descendants(root, "nav"):
        kinds = epub_types(nav)
        ol = next(iter(children(nav, "ol")), None)
        if ol is None:
            continue
        if "toc" in kinds and not toc:
            _nav_list(ol, nav_path, 0, toc, spine_paths)
        elif "landmarks" in kinds:
            for link in descendants(ol, "a"):
                href = link.get("href")
                if href:
                    path, _ = resolve_href(nav_path, href)
                    types.setdefault(path, set()).update(epub_types(link))
    return toc, types


def _nav_points(
    parent: etree._Element, base: str, depth: int, out: list[NavEntry], spine_paths: set[str]
) -> None:
    for point in children(parent, "navPoint"):
        label = next(iter(descendants(point, "text")), None)
        content = next(iter(children(point, "content")), None)
        src = content.get("src") if content is not None else None
        if src and label is not None:
            path, fragment = resolve_href(base, src)
            title = text_of(label)
            if title and path in spine_paths:
                out.append(NavEntry(path, fragment, title, depth))
        _nav_points(point, base, depth + 1, out, spine_paths)


def _read_ncx(archive: EpubArchive, ncx_path: str, spine_paths: set[str]) -> list[NavEntry]:
    root = archive.xml(ncx_path)
    toc: list[NavEntry] = []
    for nav_map in children(root, "navMap"):
        _nav_points(nav_map, ncx_path, 0, toc, spine_paths)
    return toc


def read_package(archive: EpubArchive) -> Package:
    """Read and check the package; every spine file must be in the archive."""
    _check_encryption(archive)
    opf_path = _opf_path(archive)
    opf = archive.xml(opf_path)
    if local(opf.tag) != "package":
        raise EpubError(f"{opf_path} is not an OPF package document")
    title, authors, metadata, cover_id = _metadata(opf)
    manifest = _manifest(opf, opf_path)
    spine_el = next(iter(children(opf, "spine")), None)
    if spine_el is None:
        raise EpubError(f"{opf_path} has no spine (the reading order)")
    spine: list[SpineItem] = []
    for ref in children(spine_el, "itemref"):
        item = manifest.get(ref.get("idref", ""))
        if item is None:
            raise EpubError(
                f"{opf_path}: the spine names {ref.get('idref')!r}, not in the manifest"
            )
        if item.path not in archive:
            raise EpubError(f"is missing {item.path}, a file in its reading order (spine)")
        if item.media_type in XHTML_TYPES:
            spine.append(SpineItem(item, ref.get("linear", "yes").strip().lower() != "no"))
    if not spine:
        raise EpubError(f"{opf_path} has no XHTML documents in its spine")
    spine_paths = {s.item.path for s in spine}

    nav_item = next((i for i in manifest.values() if "nav" in i.properties), None)
    nav_path = nav_item.path if nav_item is not None and nav_item.path in archive else None
    toc: list[NavEntry] = []
    file_types: dict[str, set[str]] = {}
    if nav_path is not None:
        toc, file_types = _read_nav(archive, nav_path, spine_paths)
    ncx_item = manifest.get(spine_el.get("toc", "")) or next(
        (i for i in manifest.values() if i.media_type == "application/x-dtbncx+xml"), None
    )
    if not toc and ncx_item is not None and ncx_item.path in archive:
        toc = _read_ncx(archive, ncx_item.path, spine_paths)
    for guide in children(opf, "guide"):
        for ref in children(guide, "reference"):
            href, kind = ref.get("href"), (ref.get("type") or "").lower()
            if href and kind:
                path, _ = resolve_href(opf_path, href)
                file_types.setdefault(path, set()).add(kind)

    cover = next((i for i in manifest.values() if "cover-image" in i.properties), None)
    if cover is None and cover_id in manifest:
        cover = manifest[cover_id]
    cover_path = (
        cover.path
        if cover is not None and cover.media_type in IMAGE_TYPES and cover.path in archive
        else None
    )
    return Package(
        opf_path=opf_path,
        version=opf.get("version", ""),
        title=title,
        authors=authors,
        metadata=metadata,
        spine=tuple(spine),
        toc=tuple(toc),
        file_types=file_types,
        cover_path=cover_path,
        nav_path=nav_path,
    )
