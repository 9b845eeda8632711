"""`voicebatch render` with the output flags: good runs write what was asked for, bad
values get one line and exit 2 before any job or output folder exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from pipeline.audio.probe import probe
from tests.support.images import image_bytes


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {"VOICEBATCH_ENGINE": "test-tone", "VOICEBATCH_DATA_DIR": str(tmp_path / "data")}


def test_render_with_every_output_flag(book: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    cover = tmp_path / "front.png"
    cover.write_bytes(image_bytes("png", 50, 50))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "render",
            str(book),
            "-o",
            str(out),
            "--format",
            "m4b",
            "--cover",
            str(cover),
            "--no-chapter-files",
            "--master",
            "wav",
            "--subtitles",
            "srt",
            "--loudness-preset",
            "podcast",
            "--quiet",
        ],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["loudness"]["preset"] == "podcast"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "book.m4b",
        "book.srt",
        "cover.png",
        "manifest.json",
        "master/book.wav",
    ]
    assert probe(out / "book.m4b").cover == cover.read_bytes()
    assert "book.m4b" in result.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--master", "mp3"], {}, "invalid setting master_format"),
        (["--subtitles", "srt,ass"], {}, "unknown timing format 'ass'"),
        (["--loudness-preset", "radio"], {}, "invalid setting loudness_preset"),
        (["--cover", "missing.png"], {}, "no such file"),
        (["--cover", "notes.txt"], {}, "is not a JPEG or PNG image"),
        (["--loudness-preset", "acx"], {"VOICEBATCH_LOUDNESS_LUFS": "-20"}, "cannot be combined"),
        (["--format", "aac"], {}, "invalid setting output_format"),
    ],
)
def test_bad_output_flags_fail_before_any_work(
    book: Path,
    tmp_path: Path,
    cli_env: dict[str, str],
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    (tmp_path / "notes.txt").write_text("plain text")
    out = tmp_path / "never"
    result = CliRunner().invoke(
        app, ["render", str(book), "-o", str(out), *args], env={**cli_env, **env}
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") <= 2
    assert not out.exists() and not (tmp_path / "data").exists()
