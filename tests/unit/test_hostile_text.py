"""Hostile text (issue 21): lexicon regexes that would backtrack for ever, huge plain
lexicons, number runs past Python's int-to-str limit, name templates that build huge
strings, Windows reserved names, unbounded error messages, over-long metadata and books
past the per-job caps. Each case is refused with one clear line, or handled in linear time.
"""

from __future__ import annotations

import logging
import random
import string
import time
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.engines import EngineInfo
from pipeline.errors import MAX_MESSAGE_CHARS, FieldError, InputError, JobTooLarge
from pipeline.file_names import NamedItem, check_template, item_file_names
from pipeline.ingest import Chapter, Document, SourceFile
from pipeline.ingest.markdown import parse_markdown
from pipeline.plan.documents import lexicon_from_request
from pipeline.plan.spec import build_spec
from pipeline.text.lexicon import lexicon_from_mapping, parse_lexicon
from pipeline.text.normalize import normalize_text

TONE = EngineInfo("test-tone", "tone", "test-tone 1", 1000)
SOURCE = SourceFile(path=Path("book.txt"), text="", sha256="0" * 64)


def spec_of(document: Document, **settings: object):  # type: ignore[no-untyped-def]
    return build_spec(document, SOURCE, engine=TONE, settings=Settings(**settings), output_uri=None)


# --- defect 1: lexicon regexes run in linear time -------------------------------------------


def test_the_redos_reproducer_takes_milliseconds() -> None:
    lexicon = lexicon_from_mapping({"/(a+)+$/": "x"})
    started = time.perf_counter()
    assert lexicon.apply("a" * 28 + "!") == "a" * 28 + "!"  # no match: the $ is not at the end
    assert lexicon.apply("a" * 5000) == "x"
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"/(a)\1/", "backreference"),
        ("/(?=a)b/", "lookaround"),
        ("/(?<!x)y/", "lookaround"),
        ("/(?>a+)b/", "RE2"),
    ],
)
def test_patterns_re2_cannot_bound_are_refused_naming_the_entry(pattern: str, problem: str) -> None:
    with pytest.raises(FieldError) as caught:
        lexicon_from_request({"ok": "fine", pattern: "x"})
    assert caught.value.field == "lexicon"
    message = caught.value.message
    assert message.startswith(f"lexicon: line 2: bad regex {pattern}: "), message
    assert problem in message
    assert "\n" not in message


def test_regex_flags_groups_and_unicode_replacements_still_work() -> None:
    lexicon = parse_lexicon(
        "/ÉCOLE/i = ay-kol\n"
        r"/(\d+)x(\d+)/ = \1 × \2" + "\n"
        r"/(?P<who>Dr)\. (\w+)/ = Doctor \2 (\g<who>)" + "\n"
        "/colou?r/i = [[kˈʌlɚ]]\n"
    )
    assert lexicon.apply("L'école, a 4x4 and Dr. No in COLOUR.") == (
        "L'ay-kol, a 4 × 4 and Doctor No (Dr) in [[kˈʌlɚ]]."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r"/(a)/ = \2", "line 1: bad replacement '\\\\2': no group 2"),
        (r"/(a)/ = \g<name>", "line 1: bad replacement '\\\\g<name>': no group name"),
        (r"/(a)/ = \q", "line 1: bad replacement '\\\\q': bad escape \\q"),
    ],
)
def test_a_bad_replacement_is_refused_when_read(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_lexicon(text)
    assert message in caught.value.message


def test_a_huge_plain_lexicon_applies_in_linear_time() -> None:
    rng = random.Random(1)
    words = {
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))): "x"
        for _ in range(100_000)
    }
    lexicon = lexicon_from_mapping(words)
    text = " ".join(
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8))) for _ in range(800)
    )
    started = time.perf_counter()
    for _ in range(5):
        lexicon.apply(text)
    assert time.perf_counter() - started < 0.5  # was about 1 s per 4000 characters


def test_plain_entries_keep_whole_word_and_case_rules_with_punctuation_keys() -> None:
    lexicon = parse_lexicon("C++ = see plus plus\nDr Who = Doctor Who\nnice = nyce\nNice = niece")
    assert lexicon.apply("C++x and C++. dr who, Dr Who!") == (
        "C++x and see plus plus. dr who, Doctor Who!"
    )
    assert lexicon.apply("Nice, nice, NICE; nicely") == "niece, nyce, nyce; nicely"


# --- defect 8: long digit runs ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "Total " + "1" * 5000,
        "Total " + "1" * 5000 + ".5",
        "$" + "1" * 5000,
        "$" + "1" * 5000 + ".25",
        "1" * 5000 + "th place",
        "1" * 5000 + "%",
        "1" * 5000 + " km",
        "v1.2." + "3" * 5000,
        "1" + ",111" * 1500,
    ],
)
def test_digit_runs_past_the_int_limit_are_read_digit_by_digit(raw: str) -> None:
    spoken = normalize_text(raw)
    assert not any(ch.isdigit() for ch in spoken)
    assert "one one one one" in spoken or "three three three" in spoken


def test_sixteen_digits_and_more_are_read_digit_by_digit() -> None:
    assert normalize_text("Card 1234567890123456.") == (
        "Card one two three four five six seven eight nine zero one two three four five six."
    )
    assert normalize_text("It was 123456789012345.").startswith("It was one hundred twenty")


# --- defect 6: name templates and error sizes -----------------------------------------------


@pytest.mark.parametrize(
    "template",
    ["{index:50000000}.{ext}", "{id:.99999999}.{ext}", "{id:>256}.{ext}", "{index:{index}}.{ext}"],
)
def test_wide_format_specs_are_refused_before_formatting(template: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        item_file_names([NamedItem("a", "items[0]")], template=template, ext="mp3")
    assert time.perf_counter() - started < 0.1
    assert "width" in caught.value.message or "nested" in caught.value.message
    assert len(caught.value.message) < 300


def test_reasonable_widths_still_work() -> None:
    check_template("{index:04d}-{slug:.20}.{ext}")
    names = item_file_names([NamedItem("a", "row 1")], template="{index:04d}.{ext}", ext="mp3")
    assert names == ["0001.mp3"]


def test_a_name_over_the_total_limit_is_refused() -> None:
    with pytest.raises(InputError, match="over 500 bytes"):
        item_file_names(
            [NamedItem("x" * 200, "items[0]")],
            template="{id}/{id}/{id}/{id}.{ext}",
            ext="mp3",
            subfolders=True,
        )


def test_every_error_message_is_bounded() -> None:
    error = InputError("x" * 10_000_000 + " use a shorter value")
    assert len(error.message) <= MAX_MESSAGE_CHARS
    assert error.message.endswith("use a shorter value")  # the hint at the end survives
    assert "…" in error.message
    field = FieldError("name_template", "y" * 100_000)
    assert field.message.startswith("name_template: yyy")
    assert len(field.message) <= MAX_MESSAGE_CHARS
    assert InputError("short").message == "short"


# --- defect 13: Windows reserved names ------------------------------------------------------


@pytest.mark.parametrize("item_id", ["CON", "nul", "Aux", "prn", "COM1", "lpt9", "con.txt"])
def test_windows_reserved_names_are_refused_naming_the_item(item_id: str) -> None:
    with pytest.raises(InputError) as caught:
        item_file_names([NamedItem(item_id, "items[3]")], template="{id}.{ext}", ext="mp3")
    assert caught.value.message.startswith("items[3]: file name ")
    assert "reserved" in caught.value.message


def test_reserved_names_in_sub_folders_are_refused_and_near_misses_pass() -> None:
    with pytest.raises(InputError, match="reserved"):
        item_file_names(
            [NamedItem("aux/x", "row 2")], template="{id}.{ext}", ext="mp3", subfolders=True
        )
    names = item_file_names(
        [NamedItem(n, f"row {i}") for i, n in enumerate(["console", "com10", "nullify", "lpt"])],
        template="{id}.{ext}",
        ext="mp3",
    )
    assert names == ["console.mp3", "com10.mp3", "nullify.mp3", "lpt.mp3"]


# --- defect 9: over-long metadata -----------------------------------------------------------


def test_over_long_markdown_metadata_is_truncated_to_the_columns_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = f"---\ntitle: {'T' * 700}\nauthor: {'A' * 600}\n---\n\n# One\n\nSome words.\n"
    document = parse_markdown(text, default_title="book")
    with caplog.at_level(logging.WARNING):
        spec = spec_of(document)
    assert spec.author == "A" * 499 + "…"
    assert len(spec.title) == 500
    assert "author" in caplog.text and "500" in caplog.text


# --- defect 10: per-job caps ----------------------------------------------------------------


def book(paragraphs: int, words: str = "Some words here.") -> Document:
    return Document(
        title="Big",
        chapters=(Chapter(title="One", paragraphs=tuple([words] * paragraphs)),),
    )


def test_a_book_over_the_character_cap_is_refused_naming_the_setting() -> None:
    with pytest.raises(JobTooLarge) as caught:
        spec_of(book(100), job_max_chars=1000)
    assert caught.value.http_status == 413
    assert "VOICEBATCH_JOB_MAX_CHARS" in caught.value.message
    assert "1,000" in caught.value.message


def test_a_book_over_the_chunk_cap_is_refused_naming_the_setting() -> None:
    with pytest.raises(JobTooLarge) as caught:
        spec_of(book(50, "Go."), job_max_chunks=10)
    assert "VOICEBATCH_JOB_MAX_CHUNKS" in caught.value.message
    assert "10" in caught.value.message


def test_the_default_caps_admit_a_long_audiobook() -> None:
    settings = Settings()
    assert settings.job_max_chars >= 5_000_000  # a 1,000-page book is about 2.5 M
    assert settings.job_max_chunks >= settings.catalogue_max_items
    spec = spec_of(book(200))
    assert sum(len(item.chunks) for item in spec.items) >= 1


def test_too_many_regex_entries_are_refused() -> None:
    text = "\n".join(f"/w{n}/ = x" for n in range(1001))
    with pytest.raises(InputError, match="line 1001: more than 1000 regex entries"):
        parse_lexicon(text)


def test_slug_names_are_never_reserved() -> None:
    names = item_file_names([NamedItem("CON", "items[0]")], template="{slug}.{ext}", ext="mp3")
    assert names == ["con_.mp3"]


def test_request_bodies_over_the_cap_are_refused_before_parsing_naming_the_field() -> None:
    from pipeline.plan.documents import (
        document_from_chapters,
        document_from_items,
        document_from_text,
        document_from_upload,
    )

    cases = [
        ("text", lambda: document_from_text("T", "words " * 100, max_chars=100)),
        ("chapters", lambda: document_from_chapters("T", [("One", "w " * 60)], max_chars=100)),
        ("items", lambda: document_from_items("T", [("a", "w " * 60)], max_chars=100)),
        ("file", lambda: document_from_upload("b.txt", b"words " * 100, max_chars=100)),
    ]
    for field, call in cases:
        with pytest.raises(JobTooLarge) as caught:
            call()
        assert caught.value.field == field
        assert caught.value.http_status == 413
        assert "over the job limit of 100 (VOICEBATCH_JOB_MAX_CHARS)" in caught.value.message
    assert document_from_text("T", "Some words.", max_chars=100).document.chapters
