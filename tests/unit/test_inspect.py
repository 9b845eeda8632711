"""`voicebatch inspect`: a dry run that reads and plans like a render and creates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from tests.support.epubs import converted_book

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aesop.md"


def run(*args: str, data: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["inspect", *args], env={"VOICEBATCH_DATA_DIR": str(data)})
    return result.exit_code, result.output


def test_an_unmarked_epub_shows_what_is_read_what_is_skipped_and_why(tmp_path: Path) -> None:
    book = tmp_path / "keeper.epub"
    book.write_bytes(converted_book(semantic=False))
    code, output = run(str(book), "--json", data=tmp_path / "data")
    assert code == 0, output
    found = json.loads(output)
    assert [c["title"] for c in found["chapters"]] == [
        "Chapter 1",
        "Foreword",
        "One",
        "Two",
        "Epilogue",
    ]
    assert [c["words"] for c in found["chapters"]] == [7, 10, 11, 11, 8]
    assert {s["title"]: s["reason"] for s in found["skipped"]} == {
        "The Lighthouse Keeper": "reads as title page",
        "Copyright notice": "reads as copyright notice",
        "Also by Ann Example": "reads as list of other books",
        "Contents": "reads as table of contents",
        "About the Author": "reads as about the author",
        "Other Books by Ann Example": "reads as list of other books",
        "Index": "reads as index",
    }
    assert found["first_sentences"][0] == "For my mother, who kept the light."
    assert found["chunks"] == sum(c["chunks"] for c in found["chapters"]) == 9
    assert not (tmp_path / "data").exists()  # no database, no job

    code, text = run(str(book), data=tmp_path / "data")
    assert code == 0 and "reads as copyright notice" in text and "No job was created" in text


def test_sentences_are_shown_as_spoken_and_the_estimate_is_near_the_real_length(
    tmp_path: Path,
) -> None:
    book = tmp_path / "prices.md"
    book.write_text("# Prices\n\nThe lamp costs $5 since 1999. It is 3 m tall.\n")
    code, output = run(str(book), "--json", data=tmp_path / "data")
    assert code == 0, output
    sentences = json.loads(output)["first_sentences"]
    assert "five dollars since nineteen ninety-nine" in " ".join(sentences)

    code, output = run(str(EXAMPLE), "--json", data=tmp_path / "data")
    found = json.loads(output)
    # The bundled example renders to 117.9 s with Piper (its manifest's duration).
    assert found["engine"] == "piper" and found["chunks"] == 16
    assert 117.9 * 0.9 <= found["audio_seconds"] <= 117.9 * 1.1
    assert 0 < found["render_seconds"] < found["audio_seconds"] / 10


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.md", "no such file"),
        ("```\ncode only\n```\n", "code.md", "has no text to speak"),
        ("id,text\na,Fine.\na,Twice.\n", "dup.csv", "repeats the id of line 2"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, content: str | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, output = run(str(path), data=tmp_path / "data")
    assert code == 2 and message in output and "Traceback" not in output
    assert not (tmp_path / "data").exists()
