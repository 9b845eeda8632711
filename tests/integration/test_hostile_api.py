"""Issue 21's reproducers against the submit API in-process (the fixtures of test_api.py:
real PostgreSQL, S3 on moto, Redis): a regex that would backtrack for ever, cover bombs,
a wide name template, a 5,000-digit number, over-long metadata, a book over the job caps
and Windows reserved item names. Each is answered quickly, in one small error body naming
the field, or accepted and handled; nothing is half-created.
"""

# The fixtures come from test_api.py by import, so the tests' parameters take their names.
# ruff: noqa: F811

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from pipeline.state.db import transaction
from pipeline.state.models import Job
from tests.integration.test_api import (  # noqa: F401  (fixtures used by name)
    Api,
    api,
    keys,
    make_api,
    redis_dbs,
)
from tests.support import epubs
from tests.unit.test_hostile_images import png_bomb

pytestmark = pytest.mark.integration


def while_healthz(api: Api, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """`send()` in a thread while /healthz is asked again and again; the response and
    the slowest /healthz answer in seconds."""
    result: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: result.append(send()))
    worker.start()
    slowest = 0.0
    while worker.is_alive():
        started = time.perf_counter()
        assert api.client.get("/healthz").status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
    worker.join()
    return result[0], slowest


def jobs(api: Api) -> int:
    return int(api.scalar(select(func.count()).select_from(Job)))


def error_of(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


# --- 1: ReDoS ---------------------------------------------------------------------------


def test_the_redos_lexicon_is_answered_in_milliseconds(api: Api) -> None:
    body = {"text": "a" * 28 + "!", "lexicon": {"/(a+)+$/": "x"}}
    started = time.perf_counter()
    response, slowest = while_healthz(api, lambda: api.submit(body))
    assert response.status_code == 201, response.text
    assert time.perf_counter() - started < 3  # was 15 s, and /healthz blocked as long
    assert slowest < 1


@pytest.mark.parametrize("pattern", [r"/(a)\1/", "/(?=a)a/"], ids=["backreference", "lookahead"])
def test_a_regex_re2_cannot_bound_is_422_naming_the_entry(api: Api, pattern: str) -> None:
    error = error_of(api.submit({"text": "aa", "lexicon": {pattern: "x"}}))
    assert error["field"] == "lexicon"
    assert error["message"].startswith(f"lexicon: line 1: bad regex {pattern}: ")
    assert jobs(api) == 0


# --- 2: cover bombs -------------------------------------------------------------------------


def test_a_json_cover_bomb_is_422_without_decoding(api: Api) -> None:
    cover = base64.b64encode(png_bomb()).decode()
    started = time.perf_counter()
    error = error_of(api.submit({"text": "Hello there.", "cover": cover}))
    assert time.perf_counter() - started < 2
    assert error["field"] == "cover"
    assert "16000 x 16000 pixels is over the cover limit" in error["message"]
    assert jobs(api) == 0


def test_a_multipart_cover_bomb_is_422(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs",
        files={
            "file": ("book.txt", b"Hello there.", "text/plain"),
            "cover": ("cover.png", png_bomb(), "image/png"),
        },
        headers=api.auth("alice"),
    )
    error = error_of(response)
    assert error["field"] == "cover" and "pixels is over the cover limit" in error["message"]
    assert jobs(api) == 0


def test_an_epub_with_a_cover_bomb_is_read_without_its_cover(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs",
        files={"file": ("bomb.epub", epubs.epub3_book(cover=png_bomb()), "application/epub+zip")},
        headers=api.auth("alice"),
    )
    assert response.status_code == 201, response.text
    with transaction(api.factory) as session:
        job = session.get(Job, uuid.UUID(response.json()["id"]))
        assert job is not None and job.options["cover"] is None


# --- 6: wide name template, bounded error bodies ------------------------------------------


def test_a_wide_name_template_is_a_small_422(api: Api) -> None:
    body = {"items": [{"id": "a", "text": "Hello."}], "name_template": "{index:50000000}.{ext}"}
    started = time.perf_counter()
    response = api.submit(body)
    assert time.perf_counter() - started < 2
    error = error_of(response)
    assert len(response.content) < 2000  # was 100 MB
    assert error["field"] == "name_template"
    assert "width or precision over 255" in error["message"]
    assert jobs(api) == 0


# --- 8: long digit runs --------------------------------------------------------------------


def test_a_five_thousand_digit_number_is_read_digit_by_digit(api: Api) -> None:
    response = api.submit({"text": "Total " + "1" * 5000})
    assert response.status_code == 201, response.text


# --- 9: over-long metadata -----------------------------------------------------------------


def test_an_over_long_front_matter_author_is_truncated(api: Api) -> None:
    book = f"---\ntitle: Long\nauthor: {'A' * 600}\n---\n\n# One\n\nSome words.\n".encode()
    response = api.client.post(
        "/v1/jobs",
        files={"file": ("book.md", book, "text/markdown")},
        headers=api.auth("alice"),
    )
    assert response.status_code == 201, response.text  # was 503 "database unavailable"
    with transaction(api.factory) as session:
        job = session.get(Job, uuid.UUID(response.json()["id"]))
        assert job is not None and job.author is not None
        assert len(job.author) == 500 and job.author.endswith("…")


def test_an_over_long_epub_author_is_truncated(api: Api) -> None:
    opf = epubs.MINIMAL_OPF.replace(
        "<dc:title>", f"<dc:creator>{'H' * 700}</dc:creator><dc:title>", 1
    )
    assert "H" * 700 in opf
    book = epubs.minimal({"OEBPS/content.opf": opf})
    response = api.client.post(
        "/v1/jobs",
        files={"file": ("long.epub", book, "application/epub+zip")},
        headers=api.auth("alice"),
    )
    assert response.status_code == 201, response.text
    with transaction(api.factory) as session:
        job = session.get(Job, uuid.UUID(response.json()["id"]))
        assert job is not None and job.author == "H" * 499 + "…"


# --- 10: job caps --------------------------------------------------------------------------


def test_a_book_over_the_character_cap_is_413_naming_the_setting(
    make_api: Callable[..., Api],
) -> None:
    capped = make_api(job_max_chars=1000)
    error = error_of(capped.submit({"text": "Some words here. " * 100}), 413)
    assert error["field"] == "text"
    assert "VOICEBATCH_JOB_MAX_CHARS" in error["message"]
    assert jobs(capped) == 0 and capped.messages() == []


def test_a_book_over_the_chunk_cap_is_413_naming_the_setting(
    make_api: Callable[..., Api],
) -> None:
    capped = make_api(job_max_chunks=3)
    error = error_of(capped.submit({"text": "Go now.\n\n" * 10}), 413)
    assert "VOICEBATCH_JOB_MAX_CHUNKS" in error["message"]
    assert jobs(capped) == 0 and capped.messages() == []


# --- 13: Windows reserved names ------------------------------------------------------------


@pytest.mark.parametrize("item_id", ["CON", "nul"])
def test_a_windows_reserved_item_name_is_422_naming_the_item(api: Api, item_id: str) -> None:
    error = error_of(
        api.submit({"items": [{"id": "ok", "text": "Hi."}, {"id": item_id, "text": "Hi."}]})
    )
    assert error["field"] == "items[1].id"
    assert "reserved by Windows" in error["message"]
    assert jobs(api) == 0
