"""What an EPUB reads aloud: front and back matter left out whether the book marks it
(epub:type) or not (a conversion), and the parts of the book as narrated kept."""

from __future__ import annotations

import pytest

from pipeline.ingest.epub import parse_epub
from pipeline.ingest.epub_matter import Page, matter_to_skip, reads_as
from tests.support.epubs import converted_book


@pytest.mark.parametrize("semantic", [True, False], ids=["marked", "conversion"])
def test_only_the_book_as_narrated_is_read(semantic: bool) -> None:
    document = parse_epub(converted_book(semantic=semantic), default_title="x")
    text = " ".join(p for c in document.chapters for p in c.paragraphs)
    assert "For my mother" in text  # the dedication stays
    for kept in ("winter night", "wind rose", "boats came home", "still turned"):
        assert kept in text
    for dropped in ("All rights reserved", "Salt and Stone", "lives by the sea", "stairs, 7"):
        assert dropped not in text
    # the dedication has no heading and no entry: it gets a numbered title
    assert [c.title for c in document.chapters] == [
        "Chapter 1",
        "Foreword",
        "One",
        "Two",
        "Epilogue",
    ]
    skipped = {s.title: s.reason for s in document.skipped}
    assert len(document.skipped) == 7  # title, copyright, also by, contents, about, other, index
    if semantic:
        assert skipped["Index"] == "marked index"
    else:
        assert skipped["The Lighthouse Keeper"] == "reads as title page"
        assert skipped["Copyright notice"] == "reads as copyright notice"
        assert skipped["Also by Ann Example"] == "reads as list of other books"
        assert skipped["Contents"] == "reads as table of contents"
        assert skipped["About the Author"] == "reads as about the author"
        assert skipped["Index"] == "reads as index"
    assert all(s.words > 0 for s in document.skipped)


def test_everything_is_read_when_front_matter_is_kept() -> None:
    document = parse_epub(converted_book(semantic=False), default_title="x", keep_front_matter=True)
    assert document.skipped == ()
    assert "All rights reserved" in " ".join(p for c in document.chapters for p in c.paragraphs)


def page(title: str | None, *blocks: str, in_toc: bool = False) -> Page:
    return Page(title, list(blocks), in_toc)


def test_front_matter_rules_apply_only_before_the_first_listed_chapter() -> None:
    pages = [
        page(None, "Copyright 2020 A. Writer. All rights reserved."),
        page("Chapter 1", "It began.", in_toc=True),
        page(None, "A letter. Copyright law was not on her mind; all rights reserved, she wrote."),
        page("Chapter 2", "It ended.", in_toc=True),
    ]
    assert matter_to_skip(pages, book_title="A Book") == ["copyright notice", None, None, None]


def test_back_matter_is_only_the_run_of_pages_at_the_end() -> None:
    pages = [
        page("Chapter 1", "Text.", in_toc=True),
        page("Index", "apples, 3"),  # an index in the middle is the story's
        page("Chapter 2", "Text.", in_toc=True),
        page("About the Author", "She writes.", in_toc=True),
        page("Index", "apples, 3"),
    ]
    assert matter_to_skip(pages, book_title=None) == [None, None, None, "about the author", "index"]


@pytest.mark.parametrize(
    "heading",
    ["Dedication", "Foreword", "Preface", "Prologue", "Introduction", "Epilogue", "Afterword"],
)
def test_the_parts_of_the_book_as_narrated_are_never_matter(heading: str) -> None:
    listed = page(heading, heading, "Copyright 2020. All rights reserved.", in_toc=False)
    assert reads_as(listed, book_title=heading, toc_titles=set()) is None


def test_a_listed_chapter_is_not_judged_by_what_it_says() -> None:
    short = page("The Book", "The Book", "by A. Writer, copyright 1900", in_toc=True)
    assert reads_as(short, book_title="The Book", toc_titles={"The Book"}) is None
