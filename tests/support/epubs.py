"""EPUBs built in code for the tests: well-made EPUB 3 and EPUB 2 books, and hostile or
broken archives. Each builder returns the file's bytes."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib

CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>"""

XHTML = """<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>{title}</title><style>p {{ color: red; }}</style></head>
<body{body_attrs}>
{body}
</body>
</html>"""

XHTML11 = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head><title>{title}</title><link rel="stylesheet" href="style.css" type="text/css"/></head>
<body>
{body}
</body>
</html>"""


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small valid PNG, made without an image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def zip_bytes(members: dict[str, bytes | str], *, mimetype: bool = True) -> bytes:
    """An EPUB-shaped zip: `mimetype` first and stored, then the members, deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        if mimetype:
            zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, data in members.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def page(title: str, body: str, body_attrs: str = "") -> str:
    return XHTML.format(title=title, body=body, body_attrs=body_attrs)


def opf(
    manifest: str,
    spine: str,
    *,
    version: str = "3.0",
    metadata: str = "",
    guide: str = "",
    spine_attrs: str = "",
) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="{version}" unique-identifier="uid">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">
    <dc:identifier id="uid">urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427</dc:identifier>
    {metadata}
  </metadata>
  <manifest>{manifest}</manifest>
  <spine{spine_attrs}>{spine}</spine>
  {guide}
</package>"""


COVER_PNG = png(16, 24)

EPUB3_NAV = page(
    "Contents",
    """<nav epub:type="toc" id="toc"><h1>Contents</h1><ol>
  <li><a href="part1.xhtml">Part One: The Sea</a><ol>
    <li><a href="ch1.xhtml">Chapter 1. Loomings</a><ol>
      <li><a href="ch1.xhtml#s1-2">The Spouter-Inn</a></li>
    </ol></li>
    <li><a href="ch2.xhtml#c2">Chapter 2. The Carpet-Bag</a></li>
    <li><a href="ch2.xhtml#c3">Chapter 3. The Chapel</a></li>
  </ol></li>
  <li><a href="ack.xhtml">Acknowledgements</a></li>
</ol></nav>
<nav epub:type="landmarks" hidden=""><ol>
  <li><a epub:type="cover" href="cover.xhtml">Cover</a></li>
  <li><a epub:type="copyright-page" href="copyright.xhtml">Copyright</a></li>
  <li><a epub:type="bodymatter" href="part1.xhtml">Start</a></li>
</ol></nav>""",
)

EPUB3_NCX = """<?xml version="1.0" encoding="UTF-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">
<head/><docTitle><text>Moby-Dick</text></docTitle>
<navMap>
  <navPoint id="n1"><navLabel><text>NCX title that the nav document overrides</text></navLabel>
  <content src="ch1.xhtml"/></navPoint>
</navMap></ncx>"""

CH1 = page(
    "Chapter 1",
    """<section epub:type="chapter">
<h1>Chapter 1. Loomings</h1>
<p>Call me Ishmael.<a epub:type="noteref" href="#fn1">1</a> Some years ago, never mind
how long precisely, I thought I would sail about a little.</p>
<figure><img src="images/whale.png" alt="A whale breaching"/>
<figcaption>The whale.</figcaption></figure>
<script>document.write("Script text must not be read.");</script>
<h2 id="s1-2">The Spouter-Inn</h2>
<p>Entering that gable-ended inn, you found yourself in a wide low entry.<sup>2</sup></p>
<aside epub:type="footnote" id="fn1"><p>Footnote body that must not be read.</p></aside>
</section>""",
)

CH2_AND_3 = page(
    "Chapters 2 and 3",
    """<section id="c2"><h1>Chapter 2. The Carpet-Bag</h1>
<p>I stuffed a shirt or two into my old carpet-bag.</p></section>
<section id="c3"><h1>Chapter 3. The Chapel</h1>
<p>In this same New Bedford there stands a Whaleman's Chapel.</p></section>""",
)


def epub3_book(*, cover: bytes = COVER_PNG) -> bytes:
    """An EPUB 3 book: nav + NCX (the nav wins), a cover, title, copyright and contents
    pages, a part page, nested sections, two chapters in one file, footnotes, images, an
    acknowledgements page and an index."""
    manifest = """
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    <item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
    <item id="cover-img" href="images/cover.png" media-type="image/png" properties="cover-image"/>
    <item id="whale" href="images/whale.png" media-type="image/png"/>
    <item id="cover" href="cover.xhtml" media-type="application/xhtml+xml"/>
    <item id="title" href="title.xhtml" media-type="application/xhtml+xml"/>
    <item id="copyright" href="copyright.xhtml" media-type="application/xhtml+xml"/>
    <item id="part1" href="part1.xhtml" media-type="application/xhtml+xml"/>
    <item id="ch1" href="ch1.xhtml" media-type="application/xhtml+xml"/>
    <item id="ch2" href="ch2.xhtml" media-type="application/xhtml+xml"/>
    <item id="ack" href="ack.xhtml" media-type="application/xhtml+xml"/>
    <item id="index" href="index.xhtml" media-type="application/xhtml+xml"/>"""
    spine = """<itemref idref="cover"/><itemref idref="title"/><itemref idref="copyright"/>
    <itemref idref="nav"/><itemref idref="part1"/><itemref idref="ch1"/><itemref idref="ch2"/>
    <itemref idref="ack"/><itemref idref="index"/>"""
    metadata = """<dc:title>Moby-Dick</dc:title><dc:creator>Herman Melville</dc:creator>
    <dc:language>en</dc:language><dc:publisher>Harper &amp; Brothers</dc:publisher>"""
    return zip_bytes(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": opf(manifest, spine, metadata=metadata, spine_attrs=' toc="ncx"'),
            "OEBPS/nav.xhtml": EPUB3_NAV,
            "OEBPS/toc.ncx": EPUB3_NCX,
            "OEBPS/images/cover.png": cover,
            "OEBPS/images/whale.png": png(4, 4),
            "OEBPS/cover.xhtml": page(
                "Cover",
                '<img src="images/cover.png" alt="Cover of Moby-Dick"/>',
                ' epub:type="cover"',
            ),
            "OEBPS/title.xhtml": page(
                "Title",
                '<section epub:type="titlepage"><h1>Moby-Dick</h1><p>or, The Whale</p></section>',
            ),
            "OEBPS/copyright.xhtml": page(
                "Copyright", "<p>Copyright 1851 Herman Melville. All rights reserved.</p>"
            ),
            "OEBPS/part1.xhtml": page("Part One", "<h1>Part One: The Sea</h1>"),
            "OEBPS/ch1.xhtml": CH1,
            "OEBPS/ch2.xhtml": CH2_AND_3,
            "OEBPS/ack.xhtml": page(
                "Acknowledgements",
                "<h1>Acknowledgements</h1><p>Thanks to the whalers of Nantucket.</p>",
                ' epub:type="backmatter acknowledgments"',
            ),
            "OEBPS/index.xhtml": page(
                "Index",
                '<section epub:type="index"><h1>Index</h1><p>Ahab, 12, 40</p></section>',
            ),
        }
    )


EPUB2_NCX = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE ncx PUBLIC "-//NISO//DTD ncx 2005-1//EN" "http://www.daisy.org/z3986/2005/ncx-2005-1.dtd">
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">
<head/><docTitle><text>The Time Machine</text></docTitle>
<navMap>
  <navPoint id="p1" playOrder="1"><navLabel><text>I. The Time Traveller</text></navLabel>
    <content src="Text/chapter01.html"/></navPoint>
  <navPoint id="p2" playOrder="2"><navLabel><text>II. The Machine</text></navLabel>
    <content src="Text/chapter02.html"/></navPoint>
</navMap></ncx>"""


def epub2_book() -> bytes:
    """An EPUB 2 book: NCX only, guide types, XHTML 1.1 with &nbsp; and &mdash;, footnote
    markers as <sup><a> pointing at a notes file, a chapter split over two files, a file
    the NCX leaves out (titled by its heading), and a cover found through <meta>."""
    manifest = """
    <item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
    <item id="cover-image" href="Images/cover.png" media-type="image/png"/>
    <item id="cover" href="Text/cover.html" media-type="application/xhtml+xml"/>
    <item id="copyright" href="Text/copyright.html" media-type="application/xhtml+xml"/>
    <item id="c1" href="Text/chapter01.html" media-type="application/xhtml+xml"/>
    <item id="c1b" href="Text/chapter01_split.html" media-type="application/xhtml+xml"/>
    <item id="c2" href="Text/chapter02.html" media-type="application/xhtml+xml"/>
    <item id="epilogue" href="Text/epilogue.html" media-type="application/xhtml+xml"/>
    <item id="notes" href="Text/notes.html" media-type="application/xhtml+xml"/>"""
    spine = """<itemref idref="cover" linear="no"/><itemref idref="copyright"/>
    <itemref idref="c1"/><itemref idref="c1b"/><itemref idref="c2"/><itemref idref="epilogue"/>
    <itemref idref="notes" linear="no"/>"""
    metadata = """<dc:title>The Time Machine</dc:title>
    <dc:creator opf:role="aut">H. G. Wells</dc:creator><dc:language>en</dc:language>
    <meta name="cover" content="cover-image"/>"""
    guide = """<guide><reference type="cover" title="Cover" href="Text/cover.html"/>
    <reference type="copyright-page" title="Copyright" href="Text/copyright.html"/>
    <reference type="text" title="Start" href="Text/chapter01.html"/></guide>"""
    return zip_bytes(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": opf(
                manifest,
                spine,
                version="2.0",
                metadata=metadata,
                guide=guide,
                spine_attrs=' toc="ncx"',
            ),
            "OEBPS/toc.ncx": EPUB2_NCX,
            "OEBPS/Images/cover.png": COVER_PNG,
            "OEBPS/Text/cover.html": XHTML11.format(
                title="Cover", body='<div><img src="../Images/cover.png" alt="cover"/></div>'
            ),
            "OEBPS/Text/copyright.html": XHTML11.format(
                title="Copyright", body="<p>Copyright&nbsp;1895 William Heinemann.</p>"
            ),
            "OEBPS/Text/chapter01.html": XHTML11.format(
                title="I",
                body="""<h2>I</h2>
<p>The Time Traveller&nbsp;&mdash;&nbsp;for so it will be convenient to speak of him
&mdash;&nbsp;was expounding a recondite matter to us.<sup><a href="notes.html#n1"
id="r1">[1]</a></sup></p>""",
            ),
            "OEBPS/Text/chapter01_split.html": XHTML11.format(
                title="I", body="<p>His grey eyes shone and twinkled.</p>"
            ),
            "OEBPS/Text/chapter02.html": XHTML11.format(
                title="II",
                body="""<h2>II</h2><p>I think that at that time none of us quite believed
in the Time Machine.<a href="#n2" id="r2">*</a></p>
<p id="n2"><a href="#r2">*</a> A note at the foot of the chapter.</p>""",
            ),
            "OEBPS/Text/epilogue.html": XHTML11.format(
                title="Epilogue",
                body="<h1>Epilogue</h1><p>One cannot choose but wonder.</p>",
            ),
            "OEBPS/Text/notes.html": XHTML11.format(
                title="Notes",
                body='<p><a id="n1" href="chapter01.html#r1">[1]</a> Said of the author.</p>',
            ),
        }
    )


# --- hostile and broken archives -------------------------------------------------------

MINIMAL_OPF = opf(
    '<item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/>',
    '<itemref idref="c1"/>',
    metadata="<dc:title>Small</dc:title>",
)
MINIMAL_PAGE = page("One", "<h1>One</h1><p>Some words to read.</p>")


def minimal(replace: dict[str, bytes | str | None]) -> bytes:
    """A valid one-chapter EPUB, with members replaced (None removes one)."""
    members: dict[str, bytes | str | None] = {
        "META-INF/container.xml": CONTAINER,
        "OEBPS/content.opf": MINIMAL_OPF,
        "OEBPS/c1.xhtml": MINIMAL_PAGE,
    }
    members.update(replace)
    return zip_bytes({k: v for k, v in members.items() if v is not None})


def with_members(extra: dict[str, bytes | str]) -> bytes:
    members: dict[str, bytes | str] = {
        "META-INF/container.xml": CONTAINER,
        "OEBPS/content.opf": MINIMAL_OPF,
        "OEBPS/c1.xhtml": MINIMAL_PAGE,
        **extra,
    }
    return zip_bytes(members)


def zip_bomb() -> bytes:
    """20 MB of zeros that deflate to ~20 kB: a 1000:1 ratio."""
    return with_members({"OEBPS/filler.xhtml": b"\x00" * (20 << 20)})


def traversal() -> bytes:
    return with_members({"../../evil.xhtml": MINIMAL_PAGE})


def absolute_name() -> bytes:
    return with_members({"/etc/cron.d/evil": "* * * * * root true"})


def opf_href_traversal() -> bytes:
    return minimal(
        {
            "OEBPS/content.opf": opf(
                '<item id="c1" href="../../../etc/passwd" media-type="application/xhtml+xml"/>',
                '<itemref idref="c1"/>',
            )
        }
    )


def symlink() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip")
        zf.writestr("META-INF/container.xml", CONTAINER)
        zf.writestr("OEBPS/content.opf", MINIMAL_OPF)
        link = zipfile.ZipInfo("OEBPS/c1.xhtml")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return out.getvalue()


def encrypted_member() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip")
        zf.writestr("META-INF/container.xml", CONTAINER)
        zf.writestr("OEBPS/content.opf", MINIMAL_OPF)
        zf.writestr("OEBPS/c1.xhtml", MINIMAL_PAGE)
        # "Encrypted with a password" in the central directory, which is what a reader
        # sees first (writestr clears the flag, so it is set after).
        zf.getinfo("OEBPS/c1.xhtml").flag_bits |= 0x1
    return out.getvalue()


def xxe() -> bytes:
    """An OPF whose title is an external entity reading /etc/passwd."""
    return minimal(
        {
            "OEBPS/content.opf": MINIMAL_OPF.replace(
                '<?xml version="1.0" encoding="UTF-8"?>',
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<!DOCTYPE package [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
            ).replace("<dc:title>Small</dc:title>", "<dc:title>&xxe;</dc:title>")
        }
    )


def billion_laughs() -> bytes:
    lol = "\n".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    body = (
        '<?xml version="1.0"?>\n<!DOCTYPE html [<!ENTITY lol0 "lol">\n'
        + lol
        + ']>\n<html xmlns="http://www.w3.org/1999/xhtml"><body><p>&lol9;</p></body></html>'
    )
    return minimal({"OEBPS/c1.xhtml": body})


def billion_laughs_utf16() -> bytes:
    """The same bomb in UTF-16, which EPUB allows: a byte scan for '<!ENTITY' misses it."""
    lol = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    body = (
        '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE html [<!ENTITY lol0 "lol">'
        + lol
        + ']>\n<html xmlns="http://www.w3.org/1999/xhtml"><body><p>&lol9;</p></body></html>'
    )
    return minimal({"OEBPS/c1.xhtml": body.encode("utf-16")})


def missing_spine_file() -> bytes:
    return minimal({"OEBPS/c1.xhtml": None})


def missing_container() -> bytes:
    return minimal({"META-INF/container.xml": None})


def drm() -> bytes:
    encryption = """<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
  xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
<enc:EncryptedData><enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
<enc:CipherData><enc:CipherReference URI="OEBPS/c1.xhtml"/></enc:CipherData></enc:EncryptedData>
</encryption>"""
    return with_members({"META-INF/encryption.xml": encryption})


def font_obfuscation() -> bytes:
    """Obfuscated fonts only: not DRM, the book reads."""
    encryption = """<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
  xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
<enc:EncryptedData><enc:EncryptionMethod Algorithm="http://www.idpf.org/2008/embedding"/>
<enc:CipherData><enc:CipherReference URI="OEBPS/font.otf"/></enc:CipherData></enc:EncryptedData>
</encryption>"""
    return with_members({"META-INF/encryption.xml": encryption, "OEBPS/font.otf": b"\x01" * 64})


def not_a_zip() -> bytes:
    return b"<html><body>I am an HTML page renamed to .epub</body></html>"


def too_many_members() -> bytes:
    return with_members({f"OEBPS/f{n}.txt": "" for n in range(10_001)})


def converted_book(*, semantic: bool) -> bytes:
    """A novel as a conversion tool writes it (`semantic=False`: no epub:type, no
    landmarks, a table of contents listing only the story), or the same book with
    semantic markup on every page (`semantic=True`). Reading order: title page, copyright,
    "also by", dedication, a contents page, a foreword, two chapters, an epilogue, about
    the author, other books, an index."""

    def typed(kind: str) -> str:
        return f' epub:type="{kind}"' if semantic else ""

    pages = {
        "title": ("Title", typed("titlepage"), "<h1>The Lighthouse Keeper</h1><p>A novel</p><p>Ann Example</p>"),
        "copyright": ("Copyright", typed("copyright-page"), "<p>Copyright © 2021 Ann Example. All rights reserved.</p><p>ISBN 978-0-00-000000-0</p><p>First edition.</p>"),
        "alsoby": ("Also by", typed("seriespage"), "<h2>Also by Ann Example</h2><p>The Harbour</p><p>Salt and Stone</p>"),
        "dedication": ("Dedication", typed("dedication"), "<p>For my mother, who kept the light.</p>"),
        "contents": ("Contents", typed("toc"), "<h2>Contents</h2><p>Foreword</p><p>One: The Storm</p><p>Two: The Morning</p><p>Epilogue</p>"),
        "foreword": ("Foreword", typed("foreword"), "<h1>Foreword</h1><p>This story began on a winter night by the sea.</p>"),
        "ch1": ("One", typed("chapter"), "<h1>One: The Storm</h1><p>The wind rose before dark, and the keeper climbed the stairs.</p>"),
        "ch2": ("Two", typed("chapter"), "<h1>Two: The Morning</h1><p>At dawn the sea was calm, and the boats came home.</p>"),
        "epilogue": ("Epilogue", typed("epilogue"), "<h1>Epilogue</h1><p>Years later the light still turned each night.</p>"),
        "about": ("About", typed("appendix"), "<h2>About the Author</h2><p>Ann Example lives by the sea and writes at night.</p>"),
        "other": ("More", typed("seriespage"), "<h2>Other Books by Ann Example</h2><p>The Harbour</p>"),
        "index": ("Index", typed("index"), "<h2>Index</h2>" + "".join(f"<p>{w}, {n}, {n + 3}</p>" for n, w in enumerate(["boats", "dawn", "keeper", "light", "sea", "stairs", "storm", "wind", "winter", "harbour", "night"], start=2))),
    }  # fmt: skip
    toc = ["foreword", "ch1", "ch2", "epilogue"]
    nav = page(
        "Contents",
        '<nav epub:type="toc" id="toc"><ol>'
        + "".join(f'<li><a href="{key}.xhtml">{pages[key][0]}</a></li>' for key in toc)
        + "</ol></nav>",
    )
    manifest = (
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
    )
    manifest += "".join(
        f'<item id="{key}" href="{key}.xhtml" media-type="application/xhtml+xml"/>' for key in pages
    )
    spine = "".join(f'<itemref idref="{key}"/>' for key in pages)
    metadata = "<dc:title>The Lighthouse Keeper</dc:title><dc:creator>Ann Example</dc:creator>"
    members: dict[str, bytes | str] = {
        "META-INF/container.xml": CONTAINER,
        "OEBPS/content.opf": opf(manifest, spine, metadata=metadata),
        "OEBPS/nav.xhtml": nav,
    }
    for key, (title, attrs, body) in pages.items():
        members[f"OEBPS/{key}.xhtml"] = page(title, body, attrs)
    return zip_bytes(members)
