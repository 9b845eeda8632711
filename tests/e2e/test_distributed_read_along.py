"""The read-along EPUB in distributed mode (issue 18, §5): the API and real Celery
workers on PostgreSQL, a private Redis and an S3 server, with the real Piper voice and a
real Whisper model. `voicebatch submit --read-along --qa` gets a job whose finalizer
writes `<name>.epub` from the book as written (stored at submit), with word clips from
QA's word times, listed in the job's outputs, downloaded by `voicebatch download`, and
passed by epubcheck. The API takes `read_along` as JSON and as a form field, and refuses
it for a catalogue, naming the field, with nothing created."""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.asr import asr_model_dir
from tests.support.epubcheck import assert_epubcheck_passes
from tests.support.stack import Deployments, Stack

pytestmark = pytest.mark.e2e

BOOK = """---
title: Pocket Money
author: A. Writer
---

# Pocket Money

## Saturday

Tom had $5 on 3 May. He spent it all on apples.

## Sunday

The apples were gone by noon.
"""


@pytest.fixture(scope="module")
def stack(deployments: Deployments, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with deployments.stack(
        tmp_path_factory.mktemp("stack-read-along"),
        bucket_prefix="e2e-read-along",
        broker_db=15,
        redis_db=9,
        settings={
            "VOICEBATCH_ENGINE": "piper",
            "VOICEBATCH_ASR_MODEL_DIR": str(asr_model_dir()),
            "VOICEBATCH_QA_RETRIES": "0",
        },
    ) as running:
        yield running


def _final(stack: Stack, job: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    with stack.http() as http:
        while (info := http.get(f"/v1/jobs/{job}").json())["status"] not in (
            "done",
            "partially_failed",
            "failed",
            "cancelled",
        ):
            assert time.monotonic() < deadline, info
            time.sleep(0.5)
    return dict(info)


def test_submit_read_along_downloads_an_epub_that_epubcheck_passes(
    stack: Stack, tmp_path: Path
) -> None:
    source = tmp_path / "pocket-money.md"
    source.write_text(BOOK, encoding="utf-8")
    submitted = stack.cli(
        "submit", str(source), "--read-along", "--qa", "--wait", "--format", "mp3"
    )
    assert submitted.returncode == 0, submitted.stderr + stack.tails()
    assert "status: done" in submitted.stdout
    found = re.search(r"submitted job ([0-9a-f-]{36})", submitted.stderr)
    assert found, submitted.stderr
    with stack.http() as http:
        listing = http.get(f"/v1/jobs/{found.group(1)}/outputs").json()
    assert ("read_along", "pocket-money.epub") in {(f["kind"], f["name"]) for f in listing["files"]}

    out = tmp_path / "out"
    downloaded = stack.cli("download", found.group(1), "-o", str(out))
    assert downloaded.returncode == 0, downloaded.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["qa"]["live"] is True  # QA's results were in place first
    ebook = manifest["read_along"]
    assert ebook["file"] == "pocket-money.epub" and ebook["word_clips"] > 0, ebook
    assert 0 < ebook["duration"] <= manifest["duration"]  # the chapter files, in the EPUB
    with zipfile.ZipFile(out / ebook["file"]) as epub:
        page = re.sub(r"<[^>]+>", "", epub.read("EPUB/ch1.xhtml").decode())
        assert "Tom had $5 on 3 May." in page  # the book as written, not as spoken
        assert "five dollars" not in page
        smil = epub.read("EPUB/ch1.smil").decode()
        assert 'clipBegin="' in smil and "#c1w" in smil  # word by word
        listed = set(epub.namelist())
    chapter = manifest["chapters"][0]
    assert any(name.endswith(Path(chapter["file"]).name) for name in listed)
    assert_epubcheck_passes(out / ebook["file"])
    assert not list(out.rglob("document.json*"))  # the stored text is no file of the job


def test_the_api_takes_read_along_as_json_and_refuses_it_for_a_catalogue(
    stack: Stack, tmp_path: Path
) -> None:
    with stack.http() as http:
        before = len(http.get("/v1/jobs", params={"limit": 100}).json()["jobs"])
        made = http.post(
            "/v1/jobs",
            json={"title": "Short", "text": "A short book, read along.", "read_along": True},
        )
        assert made.status_code == 201, made.text
        items = {"items": [{"id": "a", "text": "One item."}], "read_along": True}
        refused = http.post("/v1/jobs", json=items)
        catalogue = tmp_path / "items.csv"
        catalogue.write_text("id,text\na,One item.\n")
        form = http.post(
            "/v1/jobs",
            files={"file": ("items.csv", catalogue.read_bytes())},
            data={"read_along": "true"},
        )
    for response in (refused, form):
        assert response.status_code == 422, response.text
        assert "read_along" in response.text and "catalogue" in response.text, response.text
    job = _final(stack, made.json()["id"])
    assert job["status"] == "done", job
    with stack.http() as http:
        listing = http.get(f"/v1/jobs/{job['id']}/outputs").json()
        assert len(http.get("/v1/jobs", params={"limit": 100}).json()["jobs"]) == before + 1
    assert [f["name"] for f in listing["files"] if f["kind"] == "read_along"] == ["short.epub"]

    cli = stack.cli("submit", str(catalogue), "--read-along")
    assert cli.returncode != 0
    assert (
        cli.stderr.strip()
        .splitlines()[-1]
        .endswith("--read-along makes a book's EPUB; a catalogue (CSV or JSONL items) has none")
    ), cli.stderr
