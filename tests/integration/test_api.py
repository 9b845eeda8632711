"""The submit API in-process (TestClient) against real services: the test's own PostgreSQL
database, the moto S3 server, Redis db 12 for rate limits and a real Celery dispatcher
publishing to a Redis broker in db 13. No worker runs: published messages are read back
from the broker's `render` list.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from cli.client import ApiClient
from pipeline.config import Settings
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.keys import create_key, revoke_key
from pipeline.state.models import Chunk, Item, Job
from tests.support import epubs
from tests.support.services import free_port, private_redis_url
from workers.app import create_celery
from workers.dispatch import RENDER_TASK, CeleryDispatcher

pytestmark = pytest.mark.integration

TEXT = (
    "The first sentence is right here. A second one follows it closely. "
    "Then a third sentence arrives.\n\nA new paragraph starts now. It has more words. "
    "And it ends with this sentence."
)


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]
    broker: redis.Redis
    factory: sessionmaker[Session]
    settings: Settings

    def auth(self, who: str | None) -> dict[str, str]:
        return {} if who is None else {"Authorization": f"Bearer {self.keys.get(who, who)}"}

    def submit(
        self, body: dict[str, Any] | None = None, who: str = "alice", idempotency: str = ""
    ) -> httpx.Response:
        headers = self.auth(who) | ({"Idempotency-Key": idempotency} if idempotency else {})
        return self.client.post("/v1/jobs", json=body or {"text": TEXT}, headers=headers)

    def messages(self) -> list[list[Any]]:
        """The decoded [args, kwargs, embed] bodies of the messages in the `render.test-tone` queue (the engine's own)."""
        out = []
        for raw in self.broker.lrange("render.test-tone", 0, -1):
            envelope = json.loads(raw)
            assert envelope["headers"]["task"] == RENDER_TASK
            out.append(json.loads(base64.b64decode(envelope["body"])))
        return out

    def scalar(self, query: Any) -> Any:
        with transaction(self.factory) as session:
            return session.scalar(query)


@pytest.fixture
def redis_dbs() -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Redis db 12 (rate limits) and db 13 (broker), both emptied."""
    limits, broker = (
        redis.Redis.from_url(private_redis_url(12)),
        redis.Redis.from_url(private_redis_url(13)),
    )
    limits.flushdb()
    broker.flushdb()
    yield limits, broker
    limits.close()
    broker.close()


@pytest.fixture
def keys(pg_migrated_url: str) -> dict[str, str]:
    """Live keys for alice and bob, and carol's key, revoked."""
    engine = create_db_engine(pg_migrated_url)
    with transaction(session_factory(engine)) as session:
        made = {name: create_key(session, name=name)[1] for name in ("alice", "bob", "carol")}
        revoke_key(session, ref="carol")
    engine.dispose()
    return made


@pytest.fixture
def make_api(
    s3_settings: Settings,
    pg_migrated_url: str,
    redis_dbs: tuple[redis.Redis, redis.Redis],
    keys: dict[str, str],
) -> Iterator[Callable[..., Api]]:
    """Builds the app; `dispatch_to` points the dispatcher at another broker."""
    cleanup: list[Callable[[], object]] = []

    def make(dispatch_to: str | None = None, **updates: Any) -> Api:
        settings = s3_settings.model_copy(
            update={
                "database_url": pg_migrated_url,
                "broker_url": private_redis_url(13),
                "redis_url": private_redis_url(12),
                "chunk_max_chars": 40,
                "task_chunks": 2,
                **updates,
            }
        )
        celery = create_celery(
            settings.model_copy(update={"broker_url": dispatch_to or private_redis_url(13)})
        )
        client = TestClient(create_app(settings, CeleryDispatcher(celery)))
        engine = create_db_engine(pg_migrated_url)
        cleanup.extend([client.close, celery.close, engine.dispose])
        return Api(client, keys, redis_dbs[1], session_factory(engine), settings)

    yield make
    for action in reversed(cleanup):
        action()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def dead_broker() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


# --- submitting ---------------------------------------------------------------------------


def test_submit_text_publishes_chunk_ids(api: Api) -> None:
    response = api.submit({"text": TEXT, "title": "Plain"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert (job["status"], job["kind"], job["title"]) == ("pending", "book", "Plain")
    assert job["chunks"]["total"] > 2
    assert job["chunks"]["pending"] == job["chunks"]["total"]
    messages = api.messages()
    assert len(messages) == math.ceil(job["chunks"]["total"] / api.settings.task_chunks)
    args, kwargs, _embed = messages[0]
    assert kwargs == {}
    assert args[0] == job["id"]
    assert 1 <= len(args[1]) <= api.settings.task_chunks
    published = {chunk for body in messages for chunk in body[0][1]}
    with transaction(api.factory) as session:
        stored = {
            str(c) for c in session.scalars(select(Chunk.id).where(Chunk.job_id == job["id"]))
        }
    assert published == stored  # ids only: every entry is one of the job's chunk ids
    assert all(str(uuid.UUID(c)) == c for c in published)
    assert "sentence" not in json.dumps(messages)


def test_submit_chapters(api: Api) -> None:
    chapters = [{"title": "One", "text": "Words of one."}, {"title": "Two", "text": "More words."}]
    response = api.submit({"title": "Two chapters", "chapters": chapters})
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["kind"], job["status"], job["items"]["total"]) == ("book", "pending", 2)
    assert job["chunks"]["total"] > 0
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"


def test_submit_items_is_a_catalogue(api: Api) -> None:
    items = [{"id": f"sku-{n}", "text": f"Product number {n} is great."} for n in range(3)]
    response = api.submit({"items": items, "format": "flac"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["kind"], job["format"], job["items"]["total"]) == ("catalogue", "flac", 3)
    assert job["chunks"]["total"] >= 3
    assert api.scalar(select(func.count()).select_from(Item).where(Item.job_id == job["id"])) == 3


def test_submit_markdown_upload(api: Api) -> None:
    book = b"# Uploaded\n\n## First\n\nSome words here.\n\n## Second\n\nAnd more words there.\n"
    response = api.client.post(
        "/v1/jobs",
        files={"file": ("book.md", book, "text/markdown")},
        data={"format": "wav", "title": "Given Title"},
        headers=api.auth("alice"),
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["kind"], job["status"], job["format"]) == ("book", "pending", "wav")
    assert job["title"] == "Given Title"  # the documented multipart `title` field
    assert job["chunks"]["total"] > 0 and job["items"]["total"] == 2
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert len(api.messages()) == math.ceil(job["chunks"]["total"] / api.settings.task_chunks)


def chunk_texts(api: Api, job_id: str) -> list[str]:
    with transaction(api.factory) as session:
        return list(
            session.scalars(select(Chunk.text).where(Chunk.job_id == job_id).order_by(Chunk.seq))
        )


def test_submit_normalises_and_applies_a_json_lexicon(api: Api) -> None:
    body = {"text": "Dr. Nguyen paid $5.\n\nNguyen left.", "lexicon": {"Nguyen": "win"}}
    response = api.submit(body)
    assert response.status_code == 201, response.text
    assert chunk_texts(api, response.json()["id"]) == ["Doctor win paid five dollars.", "win left."]
    raw = api.submit({"text": "Dr. Nguyen paid $5.", "normalize": False})
    assert raw.status_code == 201, raw.text
    assert chunk_texts(api, raw.json()["id"]) == ["Dr. Nguyen paid $5."]


def test_submit_upload_with_a_lexicon_file_and_no_normalize(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs",
        files={
            "file": ("book.txt", b"Mr. Nguyen came at 3pm.", "text/plain"),
            "lexicon": ("names.lex", b"# names\n/ngu?yen/i = win\n", "text/plain"),
        },
        data={"normalize": "false"},
        headers=api.auth("alice"),
    )
    assert response.status_code == 201, response.text
    assert chunk_texts(api, response.json()["id"]) == ["Mr. win came at 3pm."]


def test_the_cli_client_uploads_its_lexicon_and_no_normalize(api: Api, tmp_path: Path) -> None:
    book, lexicon = tmp_path / "book.txt", tmp_path / "names.lex"
    book.write_text("Dr. Nguyen came at 3pm.", encoding="utf-8")
    lexicon.write_text("Nguyen = win\n", encoding="utf-8")
    client = ApiClient("http://testserver", api.keys["alice"])
    client.http = api.client  # the real app, in process
    api.client.headers["Authorization"] = f"Bearer {api.keys['alice']}"
    spoken = client.submit_file(book, lexicon=lexicon)
    raw = client.submit_file(book, options={"normalize": "false"}, lexicon=lexicon)
    assert chunk_texts(api, spoken["id"]) == ["Doctor win came at three PM."]
    assert chunk_texts(api, raw["id"]) == ["Dr. win came at 3pm."]


@pytest.mark.parametrize(
    ("lexicon", "message"),
    [
        ("Nguyen = win\nno separator", "line 2: expected `word = replacement`"),
        ({"/a(/": "b"}, "line 1: bad regex /a(/"),
        ({"Nguyen": "[[ŋwˈɪn]]"}, "line 1: gives phonemes ([[...]]) but engine test-tone"),
    ],
    ids=["text", "map", "phonemes"],
)
def test_a_bad_lexicon_is_422_naming_the_line(api: Api, lexicon: Any, message: str) -> None:
    response = api.submit({"text": "Nguyen came.", "lexicon": lexicon})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "lexicon" and message in error["message"], error
    assert api.scalar(select(func.count()).select_from(Job)) == 0
    assert api.messages() == []


def test_submit_epub_upload(api: Api) -> None:
    def upload(data: dict[str, str]) -> dict[str, Any]:
        response = api.client.post(
            "/v1/jobs",
            files={"file": ("moby.epub", epubs.epub3_book(), "application/epub+zip")},
            data=data,
            headers=api.auth("alice"),
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    job = upload({})
    assert job["title"] == "Moby-Dick" and job["items"]["total"] == 4
    with transaction(api.factory) as session:
        stored = session.get(Job, uuid.UUID(job["id"]))
        assert stored is not None
        assert stored.author == "Herman Melville"
        assert stored.options["cover"]["mime_type"] == "image/png"  # the book's own cover
        assert stored.options["keep_front_matter"] is False
        titles = list(
            session.scalars(
                select(Item.title).where(Item.job_id == stored.id).order_by(Item.position)
            )
        )
    assert titles == [
        "Part One: The Sea",
        "Chapter 1. Loomings",
        "Chapter 2. The Carpet-Bag",
        "Chapter 3. The Chapel",
    ]
    kept = upload({"keep_front_matter": "true"})
    assert kept["items"]["total"] == 9  # title page, copyright, contents, acknowledgements, index


@pytest.mark.parametrize(
    ("build", "message"),
    [(epubs.zip_bomb, "a zip bomb"), (epubs.xxe, "declares XML entities")],
    ids=["zip-bomb", "xxe"],
)
def test_hostile_epub_upload_is_422_and_creates_nothing(
    api: Api, build: Callable[[], bytes], message: str
) -> None:
    response = api.client.post(
        "/v1/jobs",
        files={"file": ("evil.epub", build(), "application/epub+zip")},
        headers=api.auth("alice"),
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "file" and message in error["message"]
    assert error["message"].startswith("file: evil.epub: ")
    assert api.scalar(select(func.count()).select_from(Job)) == 0
    assert api.messages() == []


# --- bad input ----------------------------------------------------------------------------

BAD_BODIES = {
    "no-kind": ({"title": "Nothing"}, "body"),
    "two-kinds": ({"text": "Hello there.", "items": [{"id": "a", "text": "Hi."}]}, "body"),
    "unknown-field": ({"text": "Hello there.", "colour": "red"}, "colour"),
    "duplicate-item-id": (
        {"items": [{"id": "Same", "text": "One."}, {"id": "same", "text": "Two."}]},
        "items[1].id",
    ),
    "empty-chapter-text": ({"chapters": [{"title": "A", "text": ""}]}, "chapters[0].text"),
    "bad-format": ({"text": "Hello there.", "format": "aiff"}, "format"),
    "voice-path": ({"text": "Hello there.", "voice": "../voices/evil.onnx"}, "voice"),
}


@pytest.mark.parametrize(("body", "where"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_json_body_is_422(api: Api, body: dict[str, Any], where: str) -> None:
    response = api.submit(body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == where
    assert error["message"]
    assert api.scalar(select(func.count()).select_from(Job)) == 0
    assert api.messages() == []


@pytest.mark.parametrize(
    ("name", "data"),
    [("book.pdf", b"Hello there, some words."), ("book.txt", b"caf\xe9 au lait, bien s\xfbr.")],
    ids=["suffix", "not-utf8"],
)
def test_bad_upload_is_422(api: Api, name: str, data: bytes) -> None:
    response = api.client.post(
        "/v1/jobs", files={"file": (name, data, "text/plain")}, headers=api.auth("alice")
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "file"
    assert api.scalar(select(func.count()).select_from(Job)) == 0


def test_wrong_content_type_is_415(api: Api) -> None:
    headers = {**api.auth("alice"), "Content-Type": "text/plain"}
    response = api.client.post("/v1/jobs", content=b"Hello there.", headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["field"] == "content-type"


def test_body_over_limit_is_413(make_api: Callable[..., Api]) -> None:
    api = make_api(api_max_body_mb=1)
    response = api.submit({"text": "word " * (1024 * 1024 // 5 + 1000)})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["field"] == "body"
    assert api.scalar(select(func.count()).select_from(Job)) == 0


# --- keys and ownership -------------------------------------------------------------------


def test_every_v1_route_needs_a_live_key(api: Api) -> None:
    job_id = api.submit().json()["id"]
    routes = [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("GET", f"/v1/jobs/{job_id}/outputs"),
    ]
    for who in (None, "vb_not-a-real-key", "carol"):
        for method, path in routes:
            response = api.client.request(
                method, path, headers=api.auth(who), json={"text": "Hello there."}
            )
            assert response.status_code == 401, (who, method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer", (who, method, path)
            assert response.json()["error"]["message"], (who, method, path)
    assert api.scalar(select(func.count()).select_from(Job)) == 1
    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("alice")).json()
    assert job["status"] == "pending"  # the unauthenticated cancel did nothing


def test_another_keys_job_is_not_found(api: Api) -> None:
    job_id = api.submit(who="alice").json()["id"]
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("GET", f"/v1/jobs/{job_id}/outputs"),
    ]:
        response = api.client.request(method, path, headers=api.auth("bob"))
        assert response.status_code == 404, (method, path, response.text)
        assert job_id in response.json()["error"]["message"]
    assert api.client.get("/v1/jobs", headers=api.auth("bob")).json() == {
        "jobs": [],
        "next_offset": None,
    }
    mine = api.client.get("/v1/jobs", headers=api.auth("alice")).json()["jobs"]
    assert [j["id"] for j in mine] == [job_id]
    assert mine[0]["status"] == "pending"  # bob's cancel did not touch it


@pytest.mark.parametrize("suffix", ["", "/cancel", "/outputs"])
def test_invalid_job_id_is_422(api: Api, suffix: str) -> None:
    method = "POST" if suffix == "/cancel" else "GET"
    response = api.client.request(method, f"/v1/jobs/not-a-uuid{suffix}", headers=api.auth("alice"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "job_id"


def test_list_jobs_pages_newest_first(api: Api) -> None:
    made = []
    for n in range(3):
        response = api.submit({"text": f"Job number {n} has words."})
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    first = api.client.get("/v1/jobs?limit=2", headers=api.auth("alice")).json()
    assert [j["id"] for j in first["jobs"]] == made[::-1][:2]
    assert first["next_offset"] == 2
    rest = api.client.get("/v1/jobs?limit=2&offset=2", headers=api.auth("alice")).json()
    assert [j["id"] for j in rest["jobs"]] == [made[0]]
    assert rest["next_offset"] is None
    bad = api.client.get("/v1/jobs?limit=0", headers=api.auth("alice"))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"


def test_idempotency_key(api: Api) -> None:
    first = api.submit(idempotency="order-1")
    assert first.status_code == 201, first.text
    published = len(api.messages())
    assert published > 0
    again = api.submit(idempotency="order-1")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    # the replay of a job still waiting publishes its pending chunks again (the first
    # try may have lost messages; duplicates change nothing) and creates nothing
    assert len(api.messages()) == 2 * published
    assert {m[0][0] for m in api.messages()} == {first.json()["id"]}
    other = api.submit(idempotency="order-2")
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(api.messages()) == 3 * published
    assert api.submit(who="bob", idempotency="order-1").status_code == 201
    assert api.scalar(select(func.count()).select_from(Job)) == 3
    reused = api.submit({"text": "A different request entirely."}, idempotency="order-1")
    assert reused.status_code == 422 and reused.json()["error"]["field"] == "Idempotency-Key"
    assert api.scalar(select(func.count()).select_from(Job)) == 3


def test_cancel_then_cancel_again(api: Api) -> None:
    job_id = api.submit().json()["id"]
    response = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.auth("alice"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("alice")).json()["status"] == (
        "cancelled"
    )
    again = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.auth("alice"))
    assert again.status_code == 409, again.text
    assert "cancelled" in again.json()["error"]["message"]


def test_outputs_of_unfinished_job_is_409(api: Api) -> None:
    job_id = api.submit().json()["id"]
    response = api.client.get(f"/v1/jobs/{job_id}/outputs", headers=api.auth("alice"))
    assert response.status_code == 409, response.text
    assert "pending" in response.json()["error"]["message"]


def test_rate_limit_per_key(make_api: Callable[..., Api]) -> None:
    api = make_api(api_rate_limit=3)
    if time.time() % 60 > 55:  # the window is a calendar minute: do not straddle two
        time.sleep(60.5 - time.time() % 60)
    for _ in range(3):
        assert api.client.get("/v1/jobs", headers=api.auth("alice")).status_code == 200
    limited = api.client.get("/v1/jobs", headers=api.auth("alice"))
    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "rate limit" in limited.json()["error"]["message"]
    assert api.client.get("/v1/jobs", headers=api.auth("bob")).status_code == 200


# --- health, metrics, schema --------------------------------------------------------------


def test_healthz_and_readyz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    response = api.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok", "redis": "ok"},
    }


def test_unknown_route_and_method_use_the_error_body(api: Api) -> None:
    for method, path, status in [("GET", "/v1/nope", 404), ("DELETE", "/v1/jobs", 405)]:
        response = api.client.request(method, path, headers=api.auth("alice"))
        assert response.status_code == status, (method, path)
        assert set(response.json()) == {"error"}, (method, path, response.text)


def test_readyz_names_a_dead_broker(make_api: Callable[..., Api]) -> None:
    api = make_api(dispatch_to=dead_broker())
    response = api.client.get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable"
    # what failed, not how: hosts and users stay in the server log
    assert body["checks"]["broker"] == "unreachable (RetryableError)"
    assert {k: v for k, v in body["checks"].items() if k != "broker"} == {
        "database": "ok",
        "storage": "ok",
        "redis": "ok",
    }


def test_submit_with_dead_broker_leaves_nothing(make_api: Callable[..., Api]) -> None:
    api = make_api(dispatch_to=dead_broker())
    response = api.submit(idempotency="retry-me")
    assert response.status_code == 503, response.text
    assert "broker" in response.json()["error"]["message"]
    assert response.headers["Retry-After"]
    assert api.scalar(select(func.count()).select_from(Job)) == 0
    assert api.scalar(select(func.count()).select_from(Chunk)) == 0
    retried = make_api().submit(idempotency="retry-me")  # same database, live broker
    assert retried.status_code == 201, retried.text  # a new job, not a replay of a ghost
    assert len(api.messages()) > 0


def test_metrics_are_not_served_on_the_api_port(api: Api) -> None:
    """Issue 20: anyone who reaches the API read its metrics (routes, volumes, errors).
    They are served on a port of their own (api.metrics.serve, `--metrics-port`)."""
    from prometheus_client import generate_latest

    api.client.get("/healthz")
    response = api.client.get("/metrics")
    assert response.status_code == 404
    assert "voicebatch_api_requests_total" not in response.text
    # still counted, for the metrics port to serve
    text = generate_latest().decode()
    assert 'voicebatch_api_requests_total{route="/healthz",status="200"}' in text
    assert 'voicebatch_api_request_seconds_count{route="/healthz"}' in text


def test_openapi_schema(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/v1/jobs": {"get", "post"},
        "/v1/jobs/{job_id}": {"get"},
        "/v1/jobs/{job_id}/cancel": {"post"},
        "/v1/jobs/{job_id}/outputs": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }
    assert {path: set(paths[path]) for path in expected} == expected
    assert "/metrics" not in paths  # on the metrics port, not in the API
    content = paths["/v1/jobs"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert "file" in content["multipart/form-data"]["schema"]["properties"]
    schemes = schema["components"]["securitySchemes"].values()
    assert any(s.get("type") == "http" and s.get("scheme", "").lower() == "bearer" for s in schemes)
    assert paths["/v1/jobs"]["get"]["security"]
