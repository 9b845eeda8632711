"""Readers and input checks: chapters from headings, one clear error per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.ingest import load_source, read_document
from pipeline.ingest.plaintext import is_chapter_heading


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_markdown_chapters_from_headings_with_book_title_and_markup_dropped(tmp_path: Path) -> None:
    doc = read_document(
        write(
            tmp_path,
            "b.md",
            (
                "---\ntitle: Front Matter Title\nauthor: Ann Author\n---\n"
                "# Ignored Because Front Matter Wins\n\n"
                "## One\n\nHello *big* [world](http://x.org) and `code`.\n\n![a picture](p.png)\n\n"
                "- a list item\n- another\n\n```\nprint('code blocks are not read')\n```\n\n"
                "## Two\n\n> A quoted line\n> continues here.\n\n### A sub-heading\n\nMore text.\n"
            ),
        )
    )
    assert doc.title == "Front Matter Title" and doc.author == "Ann Author"
    assert [c.title for c in doc.chapters] == ["One", "Two"]
    assert doc.chapters[0].paragraphs == ("Hello big world and code.", "a list item", "another")
    assert doc.chapters[1].paragraphs == (
        "A quoted line continues here.",
        "A sub-heading",
        "More text.",
    )


def test_markdown_single_title_heading_over_chapters_and_preamble(tmp_path: Path) -> None:
    doc = read_document(
        write(tmp_path, "b.md", "# My Book\n\nA foreword.\n\n## A\n\nx.\n\n## B\n\ny.\n")
    )
    assert doc.title == "My Book"
    assert [c.title for c in doc.chapters] == ["My Book", "A", "B"]
    assert doc.chapters[0].paragraphs == ("A foreword.",)


def test_markdown_without_headings_is_one_chapter(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "notes.md", "Just one paragraph.\n\nAnd another.\n"))
    assert [(c.title, len(c.paragraphs)) for c in doc.chapters] == [("notes", 2)]


def test_plain_text_chapter_lines_in_many_styles(tmp_path: Path) -> None:
    doc = read_document(
        write(
            tmp_path,
            "b.txt",
            (
                "Title page text.\n\nCHAPTER I.\n\nIt was a dark\nand stormy night.\n\n* * *\n\nLater.\n\n"
                "Chapter 2: The Morning\n\nMorning came.\n\nChapter Twenty-One\n\nLate.\n\nEPILOGUE\n\nThe end.\n"
            ),
        )
    )
    assert [c.title for c in doc.chapters] == [
        "b",
        "CHAPTER I",
        "Chapter 2: The Morning",
        "Chapter Twenty-One",
        "EPILOGUE",
    ]
    assert doc.chapters[1].paragraphs == ("It was a dark and stormy night.", "Later.")


def test_plain_text_without_chapter_marks_is_one_chapter(tmp_path: Path) -> None:
    doc = read_document(
        write(tmp_path, "essay.txt", "The chapter of my life.\n\nSecond paragraph.\n")
    )
    assert [c.title for c in doc.chapters] == ["essay"]
    assert len(doc.chapters[0].paragraphs) == 2


def test_unicode_passes_through(tmp_path: Path) -> None:
    text = "“Quotes” — dashes… ellipses; 日本語のテキスト。Ελληνικά! עברית?\n"
    doc = read_document(write(tmp_path, "u.txt", "\ufeff" + text))
    assert doc.chapters[0].paragraphs == (text.strip(),)


def test_crlf_line_endings(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "w.txt", b"Chapter 1\r\n\r\nLine one\r\nline two.\r\n"))
    assert doc.chapters[0].paragraphs == ("Line one line two.",)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "no such file"),
        ("empty.txt", "", "is empty"),
        ("blank.md", "   \n\n  * * *\n", "is empty"),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
        ("latin1.txt", "café".encode("latin-1"), "not valid UTF-8 (byte 0xe9 at offset 3)"),
        ("book.pdf", "text", "unsupported input format '.pdf'"),
        ("noext", "text", "unsupported input format '(none)'"),
    ],
)
def test_bad_input_gets_one_clear_error(
    tmp_path: Path, name: str, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / name if content is None else write(tmp_path, name, content)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_source(path)
    assert "\n" not in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.md").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        load_source(tmp_path / "dir.md")


def test_source_hash_follows_content(tmp_path: Path) -> None:
    a = load_source(write(tmp_path, "a.txt", "Same words."))
    b = load_source(write(tmp_path, "b.txt", "Same words."))
    c = load_source(write(tmp_path, "c.txt", "Other words."))
    assert a.sha256 == b.sha256 != c.sha256


def test_markdown_single_chapter_keeps_the_book_title(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "b.md", "# My Book\n\n## The Only Chapter\n\nSome text.\n"))
    assert doc.title == "My Book"
    assert [(c.title, c.paragraphs) for c in doc.chapters] == [
        ("The Only Chapter", ("Some text.",))
    ]


def test_markdown_later_top_level_heading_starts_a_chapter(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "b.md", "## C1\n\nA.\n\n## C2\n\nB.\n\n# Appendix\n\nC.\n"))
    assert doc.title == "b"
    assert [(c.title, c.paragraphs) for c in doc.chapters] == [
        ("C1", ("A.",)),
        ("C2", ("B.",)),
        ("Appendix", ("C.",)),
    ]


def test_plain_text_heading_line_directly_above_its_text(tmp_path: Path) -> None:
    doc = read_document(
        write(tmp_path, "b.txt", "Chapter 1\nIt was dark.\n\nChapter 2\nThe next day.\n")
    )
    assert [(c.title, c.paragraphs) for c in doc.chapters] == [
        ("Chapter 1", ("It was dark.",)),
        ("Chapter 2", ("The next day.",)),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Chapter Sixty",
        "Chapter Ninety-Nine",
        "CHAPTER XLIV.",
        "Part II — Winter",
        "Chapter 12 The Long Night",
        "CHAPTER I. THE BEGINNING",
        "Book One",
        "Foreword",
    ],
)
def test_plain_text_heading_forms(line: str) -> None:
    assert is_chapter_heading(line)


@pytest.mark.parametrize(
    "line",
    [
        "Part one of the plan was simple.",
        "Book did not arrive in time.",
        "Preface to the second edition is below.",
        "Chapter and verse were quoted.",
    ],
)
def test_sentences_that_start_like_headings_are_read_aloud(tmp_path: Path, line: str) -> None:
    assert not is_chapter_heading(line)
    doc = read_document(write(tmp_path, "b.txt", f"{line}\n\nMore.\n"))
    assert doc.chapters[0].paragraphs == (line, "More.")


def test_scene_break_without_blank_lines_splits_paragraphs(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "b.txt", "She left.\n* * *\nYears later she came back.\n"))
    assert doc.chapters[0].paragraphs == ("She left.", "Years later she came back.")
