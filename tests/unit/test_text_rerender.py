"""`voicebatch render` in embedded mode with the test-tone engine's journal, which records
a digest of every request's text the engine is asked to render: normalisation changes
what is said, --no-normalize keeps it as written, and a changed lexicon entry re-renders
only the chunks that hold its word (the rest come from the content-addressed cache)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

BOOK = (
    "# Names\n\n"
    "## One\n\n"
    "Mr. Nguyen came home on 5 March 2024.\n\n"
    "The garden was quiet and the gate was shut.\n\n"
    "Later that week the rain came back.\n\n"
    "## Two\n\n"
    "Nobody spoke of it again.\n\n"
    "Then Nguyen paid $3.50 for the bus.\n"
)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "VOICEBATCH_ENGINE": "test-tone",
        "VOICEBATCH_DATA_DIR": str(tmp_path / "data"),
        "VOICEBATCH_TEST_ENGINE_JOURNAL": str(tmp_path / "journal"),
    }


def rendered(env: dict[str, str], since: int = 0) -> list[str]:
    lines = Path(env["VOICEBATCH_TEST_ENGINE_JOURNAL"]).read_text().splitlines()
    return [line.split()[1] for line in lines[since:]]


def render(env: dict[str, str], tmp_path: Path, *args: str) -> str:
    book = tmp_path / "book.md"
    book.write_text(BOOK, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["render", str(book), "-o", str(tmp_path / "out"), "-f", "wav", "-q", *args], env=env
    )
    assert result.exit_code == 0, result.output
    return result.output


SPOKEN = [
    "One",
    "Mister Nguyen came home on the fifth of March, twenty twenty-four.",
    "The garden was quiet and the gate was shut.",
    "Later that week the rain came back.",
    "Two",
    "Nobody spoke of it again.",
    "Then Nguyen paid three dollars and fifty cents for the bus.",
]


def test_the_engine_is_asked_for_the_normalised_text(env: dict[str, str], tmp_path: Path) -> None:
    render(env, tmp_path)
    assert sorted(rendered(env)) == sorted(digest(text) for text in SPOKEN)


def test_no_normalize_sends_the_text_as_written(env: dict[str, str], tmp_path: Path) -> None:
    render(env, tmp_path, "--no-normalize")
    raw = [
        "One",
        "Mr. Nguyen came home on 5 March 2024.",
        "The garden was quiet and the gate was shut.",
        "Later that week the rain came back.",
        "Two",
        "Nobody spoke of it again.",
        "Then Nguyen paid $3.50 for the bus.",
    ]
    assert sorted(rendered(env)) == sorted(digest(text) for text in raw)


def test_a_changed_lexicon_entry_re_renders_only_the_chunks_with_its_word(
    env: dict[str, str], tmp_path: Path
) -> None:
    lexicon = tmp_path / "names.lex"
    lexicon.write_text("Nguyen = win\ngate = gait\n", encoding="utf-8")
    first = render(env, tmp_path, "--lexicon", str(lexicon))
    assert "rendered 7 chunks, 0 from cache" in first
    before = len(rendered(env))
    spoken = [t.replace("Nguyen", "win").replace("gate", "gait") for t in SPOKEN]
    assert sorted(rendered(env)) == sorted(digest(t) for t in spoken)

    lexicon.write_text("Nguyen = nuh-win\ngate = gait\n", encoding="utf-8")
    second = render(env, tmp_path, "--lexicon", str(lexicon))
    # A new job (the reading changed), whose five untouched chunks are cache hits.
    assert "created job" in second and "rendered 2 chunks, 5 from cache" in second
    assert sorted(rendered(env, since=before)) == sorted(
        digest(t.replace("Nguyen", "nuh-win")) for t in SPOKEN if "Nguyen" in t
    )

    again = render(env, tmp_path, "--lexicon", str(lexicon))
    assert "resuming job" in again and len(rendered(env)) == before + 2  # nothing new


def test_a_bad_lexicon_line_fails_before_any_work(env: dict[str, str], tmp_path: Path) -> None:
    lexicon = tmp_path / "bad.lex"
    lexicon.write_text("Nguyen = win\nthis line has no separator\n", encoding="utf-8")
    book = tmp_path / "book.md"
    book.write_text(BOOK, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["render", str(book), "-o", str(tmp_path / "out"), "--lexicon", str(lexicon)], env=env
    )
    assert result.exit_code == 2
    assert f"lexicon {lexicon} line 2: expected `word = replacement`" in result.output
    assert (
        not (tmp_path / "out").exists() and not Path(env["VOICEBATCH_TEST_ENGINE_JOURNAL"]).exists()
    )


def test_submit_checks_the_lexicon_before_any_upload(tmp_path: Path) -> None:
    lexicon = tmp_path / "bad.lex"
    lexicon.write_text("/unclosed = x\n", encoding="utf-8")
    book = tmp_path / "book.md"
    book.write_text(BOOK, encoding="utf-8")
    # Port 9 (discard) answers nothing: reaching the upload would fail differently.
    args = ["submit", str(book), "--server", "http://127.0.0.1:9", "--api-key", "vb_x"]
    result = CliRunner().invoke(app, [*args, "--lexicon", str(lexicon)])
    assert result.exit_code == 2, result.output
    assert f"lexicon {lexicon} line 1: regex has no closing slash" in result.output


def test_render_and_submit_document_the_text_flags() -> None:
    for command in ("render", "submit"):
        help_text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "--no-normalize" in help_text and "--lexicon" in help_text
