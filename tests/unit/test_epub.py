"""EPUB input: chapters, titles, front matter, footnotes, tags and cover from generated
books; hostile and broken archives refused with one line and nothing created; and
`voicebatch render book.epub` to an M4B whose chapter markers carry the book's titles."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipeline.audio.cover import document_cover
from pipeline.audio.probe import probe
from pipeline.errors import FieldError, InputError
from pipeline.ingest import Document, epub_archive, load_source, parse_source, read_document
from pipeline.plan.documents import document_from_upload
from tests.support import epubs

MOBY_CHAPTERS = [
    "Part One: The Sea",
    "Chapter 1. Loomings",
    "Chapter 2. The Carpet-Bag",
    "Chapter 3. The Chapel",
]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def all_text(document: Document) -> str:
    return " ".join(
        [c.title for c in document.chapters] + [p for c in document.chapters for p in c.paragraphs]
    )


@pytest.fixture
def moby(tmp_path: Path) -> Path:
    return write(tmp_path, "moby.epub", epubs.epub3_book())


def test_epub3_chapters_in_spine_order_titled_by_the_nav_document(moby: Path) -> None:
    doc = read_document(moby)
    # The nav document wins over the NCX; the part page is a chapter of its own; ch2.xhtml
    # holds two chapters cut at their anchors; "The Spouter-Inn" is a section nested
    # under chapter 1 (same file, deeper), so it stays inside chapter 1.
    assert [c.title for c in doc.chapters] == MOBY_CHAPTERS
    assert [c.heading for c in doc.chapters] == [True, True, True, True]
    assert doc.chapters[0].paragraphs == ()
    assert doc.chapters[1].paragraphs == (
        "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would "
        "sail about a little.",
        "The Spouter-Inn",
        "Entering that gable-ended inn, you found yourself in a wide low entry.",
    )
    assert doc.chapters[2].paragraphs == ("I stuffed a shirt or two into my old carpet-bag.",)
    assert doc.chapters[3].paragraphs == (
        "In this same New Bedford there stands a Whaleman's Chapel.",
    )


def test_footnotes_images_scripts_and_styles_are_not_read(moby: Path) -> None:
    text = all_text(read_document(moby, keep_front_matter=True))
    for absent in ("Footnote body", "Script text", "color: red", "A whale breaching", "The whale."):
        assert absent not in text
    # the markers: "Ishmael.1 Some" and "entry.2" would be read as numbers
    assert "Ishmael. Some" in text and "entry." in text and "entry.2" not in text


def test_front_and_back_matter_skipped_by_default_and_kept_with_the_flag(moby: Path) -> None:
    skipped = read_document(moby)
    assert not {"Copyright", "Contents", "Acknowledgements", "Index", "Moby-Dick"} & {
        c.title for c in skipped.chapters
    }
    assert "All rights reserved" not in all_text(skipped)
    kept = read_document(moby, keep_front_matter=True)
    assert [c.title for c in kept.chapters] == [
        "Moby-Dick",  # the title page, titled by its heading
        "Copyright",  # no heading, no toc entry: named for its landmark type
        "Contents",
        *MOBY_CHAPTERS,
        "Acknowledgements",
        "Index",
    ]
    contents = kept.chapters[2].paragraphs
    assert "Chapter 1. Loomings" in contents and "Start" not in contents  # hidden landmarks
    assert kept.chapters[1].paragraphs == ("Copyright 1851 Herman Melville. All rights reserved.",)


def test_title_author_metadata_and_cover_reach_the_tags(moby: Path) -> None:
    doc = read_document(moby)
    assert doc.title == "Moby-Dick" and doc.author == "Herman Melville"
    assert doc.metadata["publisher"] == "Harper & Brothers"
    assert doc.metadata["language"] == "en" and doc.metadata["format"] == "epub"
    cover = document_cover(doc)
    assert cover is not None
    assert cover.data == epubs.COVER_PNG and (cover.width, cover.height) == (16, 24)


def test_epub3_source_hash_is_of_the_file_bytes(moby: Path) -> None:
    import hashlib

    source = load_source(moby)
    assert source.sha256 == hashlib.sha256(moby.read_bytes()).hexdigest()
    assert source.data == moby.read_bytes()


def test_epub2_with_ncx_only(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "time.epub", epubs.epub2_book()))
    assert doc.title == "The Time Machine" and doc.author == "H. G. Wells"
    # NCX titles; chapter01_split.html (no entry, no heading) continues chapter I; the
    # epilogue (no entry) is titled by its heading; cover (guide, linear=no), copyright
    # (guide) and the notes file (linear=no) are skipped.
    assert [c.title for c in doc.chapters] == [
        "I. The Time Traveller",
        "II. The Machine",
        "Epilogue",
    ]
    assert doc.chapters[0].paragraphs == (
        # &nbsp; and &mdash; from XHTML 1.1 read as characters; the [1] marker dropped
        "The Time Traveller — for so it will be convenient to speak of him — was "
        "expounding a recondite matter to us.",
        "His grey eyes shone and twinkled.",
    )
    # "*" marker and the note it points at, at the foot of the same file, both dropped
    assert doc.chapters[1].paragraphs == (
        "I think that at that time none of us quite believed in the Time Machine.",
    )
    kept = read_document(write(tmp_path, "time.epub", epubs.epub2_book()), keep_front_matter=True)
    assert [c.title for c in kept.chapters] == ["Copyright", *(c.title for c in doc.chapters)]
    assert "Said of the author" not in all_text(kept)  # a note body, even when kept
    cover = document_cover(doc)  # found through <meta name="cover">
    assert cover is not None and cover.data == epubs.COVER_PNG


def test_font_obfuscation_is_not_drm(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "fonts.epub", epubs.font_obfuscation()))
    assert [c.title for c in doc.chapters] == ["One"]


def test_a_book_with_no_table_of_contents_and_no_headings_gets_numbered_titles(
    tmp_path: Path,
) -> None:
    manifest = "".join(
        f'<item id="c{n}" href="c{n}.xhtml" media-type="application/xhtml+xml"/>' for n in (1, 2)
    )
    spine = '<itemref idref="c1"/><itemref idref="c2"/>'
    data = epubs.zip_bytes(
        {
            "META-INF/container.xml": epubs.CONTAINER,
            "OEBPS/content.opf": epubs.opf(manifest, spine),
            "OEBPS/c1.xhtml": epubs.page("x", "<p>First words.</p>"),
            "OEBPS/c2.xhtml": epubs.page("x", "<p>Second words.</p>"),
        }
    )
    doc = read_document(write(tmp_path, "plain.epub", data))
    assert doc.title == "plain"  # no dc:title: the file name
    assert [(c.title, c.heading, c.paragraphs) for c in doc.chapters] == [
        ("Chapter 1", False, ("First words.",)),
        ("Chapter 2", False, ("Second words.",)),
    ]


HOSTILE: list[tuple[str, Callable[[], bytes], str]] = [
    ("zip bomb", epubs.zip_bomb, "OEBPS/filler.xhtml' is compressed 10"),
    ("too many members", epubs.too_many_members, "files in it, over the limit of 10000"),
    ("../ member", epubs.traversal, "'../../evil.xhtml' with '..' in it (path traversal)"),
    ("absolute member", epubs.absolute_name, "'/etc/cron.d/evil' with an absolute path"),
    ("../ href", epubs.opf_href_traversal, "outside the archive (path traversal)"),
    ("symlink", epubs.symlink, "has a symbolic link 'OEBPS/c1.xhtml'"),
    ("encrypted member", epubs.encrypted_member, "password-encrypted member 'OEBPS/c1.xhtml'"),
    ("XXE", epubs.xxe, "OEBPS/content.opf declares XML entities"),
    ("billion laughs", epubs.billion_laughs, "OEBPS/c1.xhtml declares XML entities"),
    ("UTF-16 billion laughs", epubs.billion_laughs_utf16, "OEBPS/c1.xhtml declares XML"),
    ("missing spine file", epubs.missing_spine_file, "is missing OEBPS/c1.xhtml, a file in"),
    ("no container.xml", epubs.missing_container, "META-INF/container.xml is missing"),
    ("DRM", epubs.drm, "is DRM-protected (META-INF/encryption.xml encrypts OEBPS/c1.xhtml)"),
    ("not a zip", epubs.not_a_zip, "is not an EPUB (not a zip archive)"),
]


@pytest.mark.parametrize(("case", "build", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_or_broken_epubs_are_refused_in_one_line(
    tmp_path: Path, case: str, build: Callable[[], bytes], message: str
) -> None:
    path = write(tmp_path, "bad.epub", build())
    with pytest.raises(InputError) as caught:
        parse_source(load_source(path))
    assert message in caught.value.message, caught.value.message
    assert caught.value.message.startswith(f"{path}: ")
    assert "\n" not in caught.value.message


def test_total_inflated_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(epub_archive, "MAX_TOTAL_BYTES", 4096)  # the real cap is 1 GB
    path = write(tmp_path, "big.epub", epubs.with_members({"OEBPS/pad.css": "x" * 5000}))
    with pytest.raises(InputError, match="inflates to over 0 MB in all"):
        read_document(path)


def test_an_upload_is_read_like_a_file_and_names_only_the_upload() -> None:
    parsed = document_from_upload("C:\\books\\moby.epub", epubs.epub3_book())
    assert [c.title for c in parsed.document.chapters] == MOBY_CHAPTERS
    assert str(parsed.source.path) == "moby.epub"
    kept = document_from_upload("moby.epub", epubs.epub3_book(), keep_front_matter=True)
    assert len(kept.document.chapters) == len(MOBY_CHAPTERS) + 5
    with pytest.raises(FieldError) as caught:
        document_from_upload("evil.epub", epubs.xxe())
    assert caught.value.field == "file"
    assert caught.value.message.startswith("file: evil.epub: OEBPS/content.opf declares")


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {"VOICEBATCH_ENGINE": "test-tone", "VOICEBATCH_DATA_DIR": str(tmp_path / "data")}


def test_render_epub_to_m4b_with_the_books_chapter_titles(
    moby: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    args = ["render", str(moby), "-o", str(out), "--format", "m4b", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--no-chapter-files"], env=cli_env)
    assert result.exit_code == 0, result.output
    book = out / "moby.m4b"
    with av.open(str(book)) as container:
        titles = [chapter["metadata"].get("title") for chapter in container.chapters()]
        tags = dict(container.metadata)
    assert titles == MOBY_CHAPTERS
    assert tags.get("title") == "Moby-Dick"
    assert "Herman Melville" in (tags.get("artist", ""), tags.get("album_artist", ""))
    assert probe(book).cover == epubs.COVER_PNG

    # The flag makes another job (not a resume of this one) with the front matter in it.
    kept = tmp_path / "kept"
    result = CliRunner().invoke(
        app, ["render", str(moby), "-o", str(kept), "--format", "m4b", "--quiet",
              "--no-chapter-files", "--keep-front-matter"],
        env=cli_env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with av.open(str(kept / "moby.m4b")) as container:
        titles = [chapter["metadata"].get("title") for chapter in container.chapters()]
    assert titles[:3] == ["Moby-Dick", "Copyright", "Contents"] and len(titles) == 9


@pytest.mark.parametrize("case", ["zip bomb", "XXE", "missing spine file", "not a zip"])
def test_a_hostile_epub_leaves_no_job_and_no_output(
    tmp_path: Path, cli_env: dict[str, str], case: str
) -> None:
    build, message = next((b, m) for name, b, m in HOSTILE if name == case)
    # A good book first, so that the database exists and holds one job to compare with.
    good = write(tmp_path, "good.epub", epubs.minimal({}))
    ok = CliRunner().invoke(
        app, ["render", str(good), "-o", str(tmp_path / "ok"), "-q"], env=cli_env
    )
    assert ok.exit_code == 0, ok.output
    database = tmp_path / "data" / "voicebatch.db"
    with sqlite3.connect(database) as conn:
        before = conn.execute("select count(*) from jobs").fetchone()[0]
    assert before == 1

    out = tmp_path / "never"
    bad = write(tmp_path, "bad.epub", build())
    result = CliRunner().invoke(app, ["render", str(bad), "-o", str(out)], env=cli_env)
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", "")
    with sqlite3.connect(database) as conn:
        assert conn.execute("select count(*) from jobs").fetchone()[0] == before
        assert conn.execute("select count(*) from chunks").fetchone()[0] > 0  # the good one's
    assert not out.exists()


@pytest.mark.parametrize("build", [epubs.billion_laughs, epubs.xxe], ids=["laughs", "xxe"])
def test_entity_declarations_are_refused_even_past_the_byte_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build: Callable[[], bytes]
) -> None:
    """Two layers: the byte scan before parsing, and the parsed DTD after (with entity
    expansion off, so parsing the bomb itself costs nothing)."""
    monkeypatch.setattr(epub_archive, "_declares_entities", lambda data: False)
    with pytest.raises(InputError, match=r"declares XML entities \(a DTD internal subset\)"):
        read_document(write(tmp_path, "bad.epub", build()))
