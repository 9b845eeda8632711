"""Catalogue input (CSV, JSONL): every rejection names its line; item names stay safe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.errors import InputError
from pipeline.file_names import NamedItem, item_file_names
from pipeline.ingest import CatalogueFormat, load_source, parse_source, read_document


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_become_items_with_their_ids_voices_and_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "shop.csv",
        "id,text,voice,price\n"
        'sku-1,"A red mug, for tea.",,3\n'
        "\n"
        'sku-2,"Two lines\n\nof text.",warm,4\n'
        'sku-3,Plain text,"  ",5\n',
    )
    document = read_document(path)
    assert document.kind == "catalogue" and document.title == "shop"
    assert [(c.item_id, c.voice, c.where) for c in document.chapters] == [
        ("sku-1", None, "line 2"),
        ("sku-2", "warm", "line 4"),
        ("sku-3", None, "line 7"),
    ]
    assert document.chapters[0].paragraphs == ("A red mug, for tea.",)
    assert document.chapters[1].paragraphs == ("Two lines", "of text.")
    assert not any(c.heading for c in document.chapters)


def test_jsonl_rows_and_configured_column_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "shop.jsonl",
        json.dumps({"sku": "a", "body": "First thing.", "speaker": "calm"})
        + "\n\n"
        + json.dumps({"sku": "b", "body": "Second thing.", "speaker": None})
        + "\n",
    )
    fmt = CatalogueFormat(id_column="sku", text_column="body", voice_column="speaker")
    document = read_document(path, catalogue=fmt)
    assert [(c.item_id, c.voice, c.where) for c in document.chapters] == [
        ("a", "calm", "line 1"),
        ("b", None, "line 3"),
    ]
    fmt_settings = CatalogueFormat.from_settings(
        Settings(catalogue_id_column="sku", catalogue_text_column="body")
    )
    assert (fmt_settings.id_column, fmt_settings.text_column) == ("sku", "body")


CSV_REJECTS = [
    ("", r"is empty"),
    ("name,text\na,b\n", r"shop.csv: line 1: no 'id' column \(the header has 'name', 'text'"),
    ("id,words\na,b\n", r"line 1: no 'text' column"),
    ("id,text,id\na,b,c\n", r"line 1: the header names column 'id' twice"),
    ("id,text\na,Fine.\nb,Fine.\na,Again.\n", r"line 4: 'id' 'a' repeats the id of line 2"),
    ("id,text\na,Fine.\n,Nobody.\n", r"line 3: empty 'id'"),
    ("id,text\na,Fine.\nb,...\n", r"line 3: 'text' of 'b' has no words"),
    ("id,text\na,Fine.\nb,\n", r"line 3: 'text' of 'b' has no words"),
    ("id,text\na,Fine.\nb,one,two\n", r"line 3: 3 fields where the header has 2"),
    ('id,text\na,"Fine.\n\nStill a.\nb,Never closed.\n', r"line \d+: malformed CSV"),
    ("id,text\na,Fine.\nb\x07,Bell.\n", r"line 3: 'id' has control characters"),
    ("id,text\n" + "x" * 201 + ",Long id.\n", r"line 2: 'id' is over 200 characters"),
]


@pytest.mark.parametrize(("text", "error"), CSV_REJECTS)
def test_csv_rejections_name_the_line(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, "shop.csv", text)
    with pytest.raises(InputError, match=error) as caught:
        read_document(path)
    assert "\n" not in caught.value.message


def test_a_multi_line_row_is_named_by_the_line_it_starts_on(tmp_path: Path) -> None:
    path = write(tmp_path, "shop.csv", 'id,text\na,"one\ntwo\nthree"\na,again\n')
    with pytest.raises(InputError, match=r"line 5: 'id' 'a' repeats the id of line 2"):
        read_document(path)


def test_oversized_rows_and_too_many_rows(tmp_path: Path) -> None:
    fmt = CatalogueFormat(max_item_chars=50, max_items=3)
    big = write(tmp_path, "big.csv", "id,text\na,short\nb," + "word " * 20 + "\n")
    with pytest.raises(InputError, match=r"line 3: 'text' of 'b' is 100 characters, over the 50"):
        read_document(big, catalogue=fmt)
    many = write(
        tmp_path,
        "many.jsonl",
        "".join(json.dumps({"id": str(i), "text": "Hello."}) + "\n" for i in range(5)),
    )
    with pytest.raises(InputError, match=r"many.jsonl: line 4: more than 3 items"):
        read_document(many, catalogue=fmt)


JSONL_REJECTS = [
    ('{"id": "a", "text": "Fine."}\n{"id": "b", "text": "Oops"\n', r"line 2: invalid JSON"),
    ('{"id": "a", "text": "Fine."}\n["b", "list"]\n', r"line 2: not a JSON object"),
    ('{"id": "a", "text": "Fine."}\n{"text": "No id."}\n', r"line 2: no 'id' field"),
    ('{"id": "a", "text": "Fine."}\n{"id": "b"}\n', r"line 2: no 'text' field"),
    ('{"id": 7, "text": "Fine."}\n', r"line 1: 'id' is a number, not a string"),
    ('{"id": "a", "text": null}\n', r"line 1: 'text' is null, not a string"),
    ('{"id": "a", "text": ["x"]}\n', r"line 1: 'text' is a list, not a string"),
    ('{"id": "a", "text": "Hi.", "voice": 3}\n', r"line 1: 'voice' is a number"),
    ('{"id": "a", "text": "Hi."}\n\n{"id": "a", "text": "Hi."}\n', r"line 3: .* line 1"),
    ('{"id": "a", "text": "   "}\n', r"line 1: 'text' of 'a' has no words"),
]


@pytest.mark.parametrize(("text", "error"), JSONL_REJECTS)
def test_jsonl_rejections_name_the_line(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, "shop.jsonl", text)
    with pytest.raises(InputError, match=error):
        read_document(path)


def test_a_header_only_csv_has_no_items(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no items"):
        parse_source(load_source(write(tmp_path, "shop.csv", "id,text,\n")))


# --- item file names ----------------------------------------------------------------------


def names(ids: list[str], template: str = "{id}.{ext}", **kw: object) -> list[str]:
    items = [NamedItem(i, f"line {n + 2}") for n, i in enumerate(ids)]
    return item_file_names(items, template=template, ext="mp3", **kw)  # type: ignore[arg-type]


def test_templates_fill_id_slug_index_and_ext() -> None:
    assert names(["SKU 1", "Café Ünï"], "{index:03d}-{slug}.{ext}") == [
        "001-sku-1.mp3",
        "002-cafe-uni.mp3",
    ]
    assert names(["A-1", "b"]) == ["A-1.mp3", "b.mp3"]
    assert names(["x"], "{id}.mp3") == ["x.mp3"]


@pytest.mark.parametrize(
    ("item_id", "template", "problem"),
    [
        ("../etc/passwd", "{id}.{ext}", "has '/'"),
        ("..", "{id}", r"'\.\.' path part"),
        ("a\\b", "{id}.{ext}", "backslash"),
        ("C:evil", "{id}.{ext}", "Windows"),
        ("tab\there", "{id}.{ext}", "control"),
        ("rtl\u202egpj", "{id}.{ext}", "invisible"),
        (".hidden", "{id}.{ext}", "hidden file"),
        ("x.wav", "{id}", r"does not end in \.mp3"),
        ("x" * 300, "{id}.{ext}", "over 255 bytes"),
    ],
)
def test_unsafe_names_are_refused_with_the_row(item_id: str, template: str, problem: str) -> None:
    with pytest.raises(InputError, match=rf"line 3: file name .* ({problem})"):
        names(["fine" if "{ext}" in template else "fine.mp3", item_id], template)


def test_sub_folders_only_when_allowed_and_never_escaping() -> None:
    with pytest.raises(InputError, match="item_subfolders"):
        names(["shoes/red"])
    assert names(["shoes/red", "shoes/blue"], subfolders=True) == [
        "shoes/red.mp3",
        "shoes/blue.mp3",
    ]
    for bad, problem in [
        ("/etc/passwd", "absolute"),
        ("a/../../b", r"'\.\.' path part"),
        ("a//b", "'empty' path part"),
        ("./a", r"'\.' path part"),
    ]:
        with pytest.raises(InputError, match=problem):
            names([bad], subfolders=True)


def test_collisions_after_rendering_name_both_rows() -> None:
    with pytest.raises(InputError, match=r"line 4: file name 'sku-1.mp3' .* line 2's file"):
        names(["SKU 1", "other", "sku 1!"], "{slug}.{ext}")
    with pytest.raises(InputError, match=r"line 3: .*'A\.mp3' .* line 2"):
        names(["a", "A"])  # one file on a case-insensitive disk
    with pytest.raises(InputError, match=r"line 3: file name 'a\.mp3/b\.mp3' .* line 2"):
        names(["a", "a.mp3/b"], subfolders=True)  # a file where a folder must go


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{name}.{ext}", r"unknown field \{name\}"),
        ("{id.__class__}.{ext}", "unknown field"),
        ("{0}.{ext}", "unknown field"),
        ("{id!r}.{ext}", "unknown field"),
        ("fixed.mp3", "has no field"),
        ("{id.{ext}", "item name template"),
    ],
)
def test_bad_templates_are_refused_as_settings(template: str, error: str) -> None:
    with pytest.raises(InputError, match=error):
        load_settings(item_name_template=template)
