"""`voicebatch render --read-along` for real: a small Markdown book rendered by Piper into
a read-along EPUB that epubcheck passes, its text as written and its audio the chapter
MP3s; after `voicebatch qa` has timed the words, the same command gives word clips. A
catalogue is refused before anything is made."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.audio.encode import decode
from tests.support.asr import asr_model_dir
from tests.support.epubcheck import assert_epubcheck_passes

pytestmark = pytest.mark.e2e

VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")
BOOK = """---
title: Pocket Money
author: A. Writer
---

# Pocket Money

## Saturday

Tom had $5 on 3 May. He spent it all on apples.

Dr. Lee said nothing.

## Sunday

The apples were gone by noon.
"""


def cli(*args: str, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    environ |= {"VOICEBATCH_DATA_DIR": str(data), **env}
    return subprocess.run(
        [VOICEBATCH, *args], capture_output=True, text=True, env=environ, timeout=600
    )


def clips(epub: zipfile.ZipFile, smil: str) -> list[tuple[str, str, float, float]]:
    def seconds(clock: str) -> float:
        h, m, s = clock.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    found = re.findall(
        r'<text src="([^"]+)"/><audio src="([^"]+)" clipBegin="([^"]+)" clipEnd="([^"]+)"/>',
        epub.read(smil).decode(),
    )
    return [(t, a, seconds(b), seconds(e)) for t, a, b, e in found]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("read-along")
    source = root / "pocket-money.md"
    source.write_text(BOOK, encoding="utf-8")
    out = root / "out"
    done = cli("render", str(source), "-o", str(out), "--read-along", "-q", data=root / "data")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"read-along EPUB: {out / 'pocket-money.epub'}" in done.stdout
    return root, source, out


def test_the_read_along_epub_shows_the_text_and_plays_the_chapter_mp3s(
    rendered: tuple[Path, Path, Path],
) -> None:
    _, _, out = rendered
    manifest = json.loads((out / "manifest.json").read_text())
    epub_path = out / manifest["read_along"]["file"]
    assert epub_path.name == "pocket-money.epub"
    with zipfile.ZipFile(epub_path) as epub:
        page = epub.read("EPUB/ch1.xhtml").decode()
        # the text as written, while the manifest holds what was said
        assert '<span id="c2">Tom had $5 on 3 May.' in page
        assert "five dollars" not in page
        assert "five dollars" in manifest["chapters"][0]["chunks"][1]["text"]
        for number, chapter in enumerate(manifest["chapters"], start=1):
            pars = clips(epub, f"EPUB/ch{number}.smil")
            assert [t for t, *_ in pars] == [
                f"ch{number}.xhtml#c{i}" for i in range(1, len(chapter["chunks"]) + 1)
            ]
            (audio,) = {a for _, a, _, _ in pars}
            member = epub.read(f"EPUB/{audio}")
            assert member == (out / chapter["file"]).read_bytes()
            length = decode(member).duration
            previous = 0.0
            for _text, _audio, begin, end in pars:
                assert previous <= begin < end <= length
                previous = end
    assert_epubcheck_passes(epub_path)


def test_after_qa_the_same_command_gives_word_clips(rendered: tuple[Path, Path, Path]) -> None:
    model = str(asr_model_dir())
    root, source, out = rendered
    checked = cli("qa", str(out), data=root / "data", VOICEBATCH_ASR_MODEL_DIR=model)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    again = cli("render", str(source), "-o", str(out), "-q", data=root / "data",
                VOICEBATCH_READ_ALONG="1")  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already finished" in again.stdout  # nothing rendered again: the EPUB only
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["read_along"]["word_clips"] > manifest["read_along"]["sentence_clips"]
    with zipfile.ZipFile(out / "pocket-money.epub") as epub:
        page = epub.read("EPUB/ch1.xhtml").decode()
        smil = epub.read("EPUB/ch1.smil").decode()
        pars = clips(epub, "EPUB/ch1.smil")
        length = decode(epub.read(f"EPUB/{pars[0][1]}")).duration
    assert re.search(r'<span id="(c2w\d+)">\$5</span>', page)
    assert '<seq id="s-c2" epub:textref="ch1.xhtml#c2">' in smil
    assert all(a < b <= length for *_, a, b in pars)
    assert all(p[3] == n[2] for p, n in itertools.pairwise(pars))
    assert_epubcheck_passes(out / "pocket-money.epub")


def test_a_catalogue_with_read_along_is_refused_and_nothing_made(tmp_path: Path) -> None:
    catalogue = tmp_path / "prompts.csv"
    catalogue.write_text("id,text\na,Hello there.\n", encoding="utf-8")
    out = tmp_path / "out"
    done = cli("render", str(catalogue), "-o", str(out), "--read-along", data=tmp_path / "data")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--read-along" in lines[0] and "catalogue" in lines[0], lines
    assert not out.exists()
