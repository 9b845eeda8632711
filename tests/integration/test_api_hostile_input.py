"""Hostile input to the submit API (issue 21, defects 7, 9, 12 and 13): control
characters, out-of-range numbers, deeply nested JSON Lines and the smaller edge cases are
refused with a 422 that names the field, and nothing is created; never a 500 or a 503.

The app runs in process on the test's own PostgreSQL database (where a NUL once became a
500), with local storage, the test-tone engine and a dispatcher that records what it
would publish instead of a broker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from pipeline.config import Settings, load_settings
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.keys import create_key
from pipeline.state.models import Job

pytestmark = pytest.mark.integration

TEXT = "The first sentence is here. A second one follows it."


@dataclass
class RecordingDispatcher:
    """Stands in for the broker: remembers each job it was asked to publish."""

    published: list[uuid.UUID] = field(default_factory=list)

    def render(self, job_id: uuid.UUID, groups: Any) -> None:
        self.published.append(job_id)

    def ping(self, timeout: float = 3.0) -> None:
        return None


@dataclass
class LocalApi:
    client: TestClient
    key: str
    database_url: str
    settings: Settings
    dispatcher: RecordingDispatcher

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def jobs(self) -> int:
        engine = create_db_engine(self.database_url)
        try:
            with transaction(session_factory(engine)) as session:
                return int(session.scalar(select(func.count()).select_from(Job)) or 0)
        finally:
            engine.dispose()


def local_api(database_url: str, data_dir: Path, **updates: Any) -> LocalApi:
    """The app on `database_url` (migrated) with a fresh key; the caller closes the client."""
    engine = create_db_engine(database_url)
    with transaction(session_factory(engine)) as session:
        key = create_key(session, name="hostile")[1]
    engine.dispose()
    settings = load_settings(
        engine="test-tone",
        data_dir=data_dir,
        output_format="wav",
        database_url=database_url,
        chunk_max_chars=200,
        **updates,
    )
    dispatcher = RecordingDispatcher()
    client = TestClient(create_app(settings, dispatcher), raise_server_exceptions=False)
    return LocalApi(client, key, database_url, settings, dispatcher)


@pytest.fixture
def api(pg_migrated_url: str, tmp_path: Path) -> Iterator[LocalApi]:
    made = local_api(pg_migrated_url, tmp_path / "data")
    yield made
    made.client.close()


def refused(response: httpx.Response, field: str, status: int = 422) -> str:
    """The message of a one-line error naming `field`, after checking status and field."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, response.text
    assert "\n" not in error["message"]
    return str(error["message"])


# --- defect 7: control characters ----------------------------------------------------------

NUL, BELL, ESC = "\u0000", "\u0007", "\u001b"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": f"Hello{NUL} world."}, "text"),
        ({"text": TEXT, "title": f"A title{NUL}"}, "title"),
        ({"chapters": [{"title": f"One{NUL}", "text": TEXT}]}, "chapters[0].title"),
        (
            {"chapters": [{"title": "One", "text": TEXT}, {"title": "Two", "text": f"a{BELL}b"}]},
            "chapters[1].text",
        ),
        ({"items": [{"id": f"a{NUL}", "text": TEXT}]}, "items[0].id"),
        ({"items": [{"id": "a", "text": f"{ESC}[31m red"}]}, "items[0].text"),
        ({"items": [{"id": "a", "text": TEXT, "voice": f"v{NUL}"}]}, "items[0].voice"),
        ({"text": TEXT, "voice": f"tone{NUL}"}, "voice"),
        (
            {"items": [{"id": "a", "text": TEXT}], "name_template": f"{{id}}{NUL}.{{ext}}"},
            "name_template",
        ),
        ({"text": TEXT, "lexicon": f"Nguyen = win{NUL}"}, "lexicon"),
        ({"text": TEXT, "lexicon": {f"Ngu{NUL}yen": "win"}}, "lexicon"),
        ({"text": TEXT, "lexicon": {"Nguyen": f"w{NUL}in"}}, "lexicon"),
        ({"text": TEXT, "id_column": f"id{NUL}"}, "id_column"),
    ],
)
def test_control_characters_in_a_json_body_are_422_naming_the_field(
    api: LocalApi, body: dict[str, Any], field: str
) -> None:
    message = refused(api.client.post("/v1/jobs", json=body, headers=api.auth), field)
    assert "control character" in message
    assert api.jobs() == 0 and api.dispatcher.published == []


def test_tabs_and_newlines_are_text_not_control_characters(api: LocalApi) -> None:
    body = {"title": "Tabs\tare fine", "text": "One line.\r\nAnother\tline.\n\nA paragraph."}
    response = api.client.post("/v1/jobs", json=body, headers=api.auth)
    assert response.status_code == 201, response.text


def test_control_characters_in_form_fields_are_422_naming_the_field(api: LocalApi) -> None:
    for name in ("title", "voice", "name_template"):
        response = api.client.post(
            "/v1/jobs",
            files={"file": ("book.txt", TEXT.encode(), "text/plain")},
            data={name: f"bad{NUL}value"},
            headers=api.auth,
        )
        assert "control character" in refused(response, name)
    assert api.jobs() == 0


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        # past the first 64 KiB, where the binary-file sniffing once stopped looking
        ("book.txt", (TEXT + "\n\n") * 2000 + f"Late{NUL}NUL.", "line 4001"),
        ("book.md", f"# Book\n\nSome words{BELL}.", "line 3"),
        ("shop.csv", f'id,text\nsku-1,"A red mug{NUL}"\n', "line 2"),
        (
            "shop.jsonl",
            '{"id": "a", "text": "Fine."}\n{"id": "b", "text": "x' + NUL + '"}\n',
            "line 2",
        ),
    ],
)
def test_uploaded_files_with_control_characters_are_422_naming_the_file(
    api: LocalApi, name: str, data: str, where: str
) -> None:
    response = api.client.post(
        "/v1/jobs", files={"file": (name, data.encode(), "text/plain")}, headers=api.auth
    )
    message = refused(response, "file")
    assert name in message and where in message and "control character" in message
    assert api.jobs() == 0


def test_an_uploaded_lexicon_with_a_nul_is_422_naming_the_lexicon(api: LocalApi) -> None:
    response = api.client.post(
        "/v1/jobs",
        files={
            "file": ("book.txt", TEXT.encode(), "text/plain"),
            "lexicon": ("names.lex", f"Nguyen = win{NUL}\n".encode(), "text/plain"),
        },
        headers=api.auth,
    )
    assert "control character" in refused(response, "lexicon")
    assert api.jobs() == 0


# --- defect 9: numbers out of range -----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("offset=9223372036854775808", "offset"),
        ("offset=9223372036854775807", "offset"),
        ("offset=-1", "offset"),
        ("limit=9223372036854775808", "limit"),
        ("limit=1&offset=99999999999999999999999999", "offset"),
    ],
)
def test_numbers_out_of_range_are_422_not_503(api: LocalApi, query: str, field: str) -> None:
    refused(api.client.get(f"/v1/jobs?{query}", headers=api.auth), field)


def test_the_largest_offset_allowed_answers_an_empty_page(api: LocalApi) -> None:
    schema = api.client.get("/openapi.json").json()
    offset = next(
        p for p in schema["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "offset"
    )
    largest = offset["schema"]["maximum"]
    response = api.client.get(f"/v1/jobs?limit=100&offset={largest}", headers=api.auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"jobs": [], "next_offset": None}


# --- defect 12: nesting ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_jsonl_is_422_naming_the_line(api: LocalApi, depth: int) -> None:
    deep = '{"id": "b", "text": "Deep.", "extra": ' + "[" * depth + "]" * depth + "}"
    data = json.dumps({"id": "a", "text": "Flat."}) + "\n" + deep + "\n"
    response = api.client.post(
        "/v1/jobs", files={"file": ("shop.jsonl", data.encode(), "text/plain")}, headers=api.auth
    )
    message = refused(response, "file")
    assert "line 2" in message and "nested" in message
    assert api.jobs() == 0


def test_deeply_nested_json_body_is_422(api: LocalApi) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = api.client.post(
        "/v1/jobs",
        content=f'{{"text": "Hello.", "lexicon": {deep}}}'.encode(),
        headers={**api.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text


# --- defect 13: the smaller ones ---------------------------------------------------------------


def test_a_wrong_method_lists_every_method_the_path_answers(api: LocalApi) -> None:
    for method, path, allowed in [
        ("DELETE", "/v1/jobs", {"GET", "POST"}),
        ("PUT", "/v1/jobs", {"GET", "POST"}),
        ("DELETE", f"/v1/jobs/{uuid.uuid4()}", {"GET"}),
        ("GET", f"/v1/jobs/{uuid.uuid4()}/cancel", {"POST"}),
        ("POST", "/healthz", {"GET"}),
    ]:
        response = api.client.request(method, path, headers=api.auth)
        assert response.status_code == 405, (method, path, response.text)
        assert set(response.headers["Allow"].split(", ")) == allowed, (method, path)
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize("days", [True, False, 3.5, "3", None])
def test_restore_days_must_be_a_whole_number(api: LocalApi, days: Any) -> None:
    job_id = api.client.post("/v1/jobs", json={"text": TEXT}, headers=api.auth).json()["id"]
    response = api.client.post(f"/v1/jobs/{job_id}/restore", json={"days": days}, headers=api.auth)
    if days is None:  # null: the server's default; the job is not finished yet
        assert response.status_code == 409, response.text
    else:
        refused(response, "days")


@pytest.mark.parametrize("template", ["{nope}.{ext}", "{id", "plain.wav", "{id!r}.{ext}"], ids=str)
def test_a_bad_name_template_names_name_template(api: LocalApi, template: str) -> None:
    body = {"items": [{"id": "a", "text": TEXT}], "name_template": template}
    refused(api.client.post("/v1/jobs", json=body, headers=api.auth), "name_template")
    upload = api.client.post(
        "/v1/jobs",
        files={"file": ("shop.csv", b"id,text\na,Words here.\n", "text/csv")},
        data={"name_template": template},
        headers=api.auth,
    )
    refused(upload, "name_template")
    assert api.jobs() == 0


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_idempotency_key_is_422(api: LocalApi, value: str) -> None:
    headers = {**api.auth, "Idempotency-Key": value}
    response = api.client.post("/v1/jobs", json={"text": TEXT}, headers=headers)
    refused(response, "Idempotency-Key")
    assert api.jobs() == 0


# --- found by schemathesis: answers the document did not list ----------------------------


def test_too_many_or_unknown_form_fields_are_422_not_400(api: LocalApi) -> None:
    book = {"file": ("book.txt", TEXT.encode(), "text/plain")}
    many = {f"field{n}": "x" for n in range(20)}
    response = api.client.post("/v1/jobs", files=book, data=many, headers=api.auth)
    assert "multipart" in refused(response, "body")
    unknown = api.client.post("/v1/jobs", files=book, data={"titel": "T"}, headers=api.auth)
    assert "not a field" in refused(unknown, "titel")
    assert api.jobs() == 0


@pytest.mark.parametrize(
    "body", [b"\xff\xfe", b"[" * 100_000, b'{"days": 3'], ids=["not-utf8", "deep", "cut"]
)
def test_a_restore_body_that_is_not_json_is_422_not_400(api: LocalApi, body: bytes) -> None:
    job_id = api.client.post("/v1/jobs", json={"text": TEXT}, headers=api.auth).json()["id"]
    response = api.client.post(
        f"/v1/jobs/{job_id}/restore",
        content=body,
        headers={**api.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text


def test_a_restore_body_of_another_type_is_415(api: LocalApi) -> None:
    job_id = api.client.post("/v1/jobs", json={"text": TEXT}, headers=api.auth).json()["id"]
    response = api.client.post(
        f"/v1/jobs/{job_id}/restore",
        content=b"days=3",
        headers={**api.auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    refused(response, "content-type", status=415)
