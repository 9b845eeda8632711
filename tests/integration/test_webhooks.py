"""Signed webhooks end to end: the real API (uvicorn in a thread), a real `voicebatch
worker` process consuming render, assemble and webhooks on a private Redis, PostgreSQL,
and a receiver (http.server on loopback) that answers as each test scripts it. Every
signature is checked with the official `standardwebhooks` package.

The worker may reach the receiver through VOICEBATCH_WEBHOOK_ALLOWED_NETWORKS (loopback
only, so a redirect elsewhere is still refused); one test delivers in-process with
VOICEBATCH_WEBHOOK_ALLOW_PRIVATE_HOSTS=true, and one with neither, to see a refusal
recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import redis
import uvicorn
from standardwebhooks import Webhook

from api.app import create_app
from pipeline.config import Settings, load_settings
from pipeline.engines import engine_info
from pipeline.plan.documents import document_from_text
from pipeline.plan.submit import submit_job
from pipeline.state import store
from pipeline.state import webhooks as outbox
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.keys import authenticate, create_key, list_keys
from pipeline.state.models import Job, WebhookDelivery, WebhookStatus
from pipeline.webhooks.delivery import deliver
from tests.support.postgres import PostgresAdmin, pg_url
from tests.support.services import free_port, private_redis_url
from tests.support.stack import VOICEBATCH, stop_processes
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher
from workers.reconciler import sweep_webhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REDIS_DB = 11
TEXT = "The first sentence is here. And a second one follows it."


class Receiver(BaseHTTPRequestHandler):
    """Answers each path with the statuses scripted for it, in turn (the last repeats),
    and keeps every request it got."""

    script: ClassVar[dict[str, list[tuple[int, dict[str, str]]]]] = {}
    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.lock:
            self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            answers = self.script.get(self.path, [(404, {})])
            status, headers = answers.pop(0) if len(answers) > 1 else answers[0]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass

    @classmethod
    def requests_to(cls, path: str) -> list[tuple[dict[str, str], bytes]]:
        with cls.lock:
            return [(h, b) for p, h, b in cls.seen if p == path]


@dataclass
class Deployment:
    api: str
    key: str
    receiver: str
    settings: Settings
    database_url: str
    worker_log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def submit(self, callback: str | None, text: str = TEXT, **fields: Any) -> httpx.Response:
        body: dict[str, Any] = {"title": "Hooked", "text": text, "format": "wav", **fields}
        if callback is not None:
            body["callback_url"] = callback
        return httpx.post(f"{self.api}/v1/jobs", json=body, headers=self.auth, timeout=30)

    def webhooks(self, job_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/v1/jobs/{job_id}/webhooks", headers=self.auth)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def _wait_for(what: str, found: Callable[[], Any], log: Path, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def deployment(
    pg_admin: PostgresAdmin, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("webhooks")
    database_url = pg_url(pg_admin.create(template=pg_template))
    broker_url = private_redis_url(REDIS_DB)
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    env = {
        "VOICEBATCH_DATABASE_URL": database_url,
        "VOICEBATCH_BROKER_URL": broker_url,
        "VOICEBATCH_ENGINE": "test-tone",
        "VOICEBATCH_STORAGE_URL": str(root / "objects"),
        "VOICEBATCH_DATA_DIR": str(root / "data"),
        "VOICEBATCH_OUTPUT_FORMAT": "wav",
        "VOICEBATCH_WEBHOOK_SECRET": SECRET,
        "VOICEBATCH_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "VOICEBATCH_WEBHOOK_FIRST_RETRY_SECONDS": "1",
        # slow enough that a job of many sentences is still rendering when it is cancelled
        "VOICEBATCH_TEST_ENGINE_DELAY_MS": "40",
    }
    settings = load_settings(**{k.removeprefix("VOICEBATCH_").lower(): v for k, v in env.items()})
    engine = create_db_engine(database_url)
    with transaction(session_factory(engine)) as session:
        key = create_key(session, name="hooks")[1]
    engine.dispose()

    Receiver.seen = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()

    celery = create_celery(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, CeleryDispatcher(celery)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    api = threading.Thread(target=server.run, daemon=True)
    api.start()

    log = root / "worker.log"
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    process_env.update(env)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                *(VOICEBATCH, "worker", "--queues", "render,assemble,webhooks"),
                *("--pool", "threads", "--concurrency", "3"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=process_env,
            cwd=root,
        )
    try:
        _wait_for("the worker", lambda: b" ready." in log.read_bytes(), log, timeout=120)
        _wait_for("the API", lambda: server.started, log, timeout=30)
        yield Deployment(
            f"http://127.0.0.1:{port}",
            key,
            f"http://127.0.0.1:{receiver.server_address[1]}",
            settings,
            database_url,
            log,
        )
    finally:
        stop_processes([worker])
        server.should_exit = True
        api.join(10)
        receiver.shutdown()
        receiver.server_close()
        celery.close()
        broker.flushdb()
        broker.close()


def _verified(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The payload, once the official verifier accepted its signature."""
    payload: dict[str, Any] = Webhook(SECRET).verify(body, headers)
    return payload


def _path() -> str:
    return f"/{uuid.uuid4().hex}"


def test_a_finished_job_posts_a_signed_job_done(deployment: Deployment) -> None:
    path = _path()
    Receiver.script[path] = [(200, {})]
    response = deployment.submit(deployment.receiver + path)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["callback_url"] == deployment.receiver + path

    (headers, body), *_ = _wait_for(
        "job.done webhook", lambda: Receiver.requests_to(path), deployment.worker_log
    )
    payload = _verified(headers, body)
    assert payload["type"] == "job.done"
    assert payload["data"]["id"] == job["id"] and payload["data"]["status"] == "done"
    assert headers["webhook-id"].startswith("msg_")
    assert headers["content-type"] == "application/json"

    log = _wait_for(
        "the attempt recorded",
        lambda: (w := deployment.webhooks(job["id"]))["attempts"] and w,
        deployment.worker_log,
    )
    (attempt,) = log["attempts"]
    assert attempt["outcome"] == "delivered" and attempt["status_code"] == 200
    assert attempt["webhook_id"] == headers["webhook-id"] and attempt["event"] == "job.done"
    (hook,) = log["webhooks"]
    assert hook["status"] == "delivered" and hook["attempts"] == 1


def test_a_500_is_retried_with_the_same_webhook_id(deployment: Deployment) -> None:
    path = _path()
    Receiver.script[path] = [(500, {}), (200, {})]
    job = deployment.submit(deployment.receiver + path).json()

    received = _wait_for(
        "two attempts",
        lambda: len(Receiver.requests_to(path)) >= 2 and Receiver.requests_to(path),
        deployment.worker_log,
    )
    first, second = received[:2]
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert first[1] == second[1]  # the same message, byte for byte
    for headers, body in received:
        assert _verified(headers, body)["type"] == "job.done"

    log = _wait_for(
        "both attempts recorded",
        lambda: (
            len((w := deployment.webhooks(job["id"]))["attempts"]) == 2
            and w["webhooks"][0]["status"] == "delivered"
            and w
        ),
        deployment.worker_log,
    )
    retry, delivered = log["attempts"]
    assert (retry["number"], retry["outcome"], retry["status_code"]) == (1, "retry", 500)
    assert (delivered["number"], delivered["outcome"], delivered["status_code"]) == (
        2,
        "delivered",
        200,
    )
    assert retry["webhook_id"] == delivered["webhook_id"] == first[0]["webhook-id"]


def test_a_410_stops_the_retries(deployment: Deployment) -> None:
    path = _path()
    Receiver.script[path] = [(410, {}), (200, {})]
    job = deployment.submit(deployment.receiver + path).json()

    log = _wait_for(
        "the 410 recorded",
        lambda: (
            (w := deployment.webhooks(job["id"]))["webhooks"]
            and w["webhooks"][0]["status"] == "gone"
            and w
        ),
        deployment.worker_log,
    )
    (attempt,) = log["attempts"]
    assert (attempt["outcome"], attempt["status_code"]) == ("gone", 410)
    (hook,) = log["webhooks"]
    assert hook["next_attempt_at"] is None and hook["finished_at"] is not None
    assert len(Receiver.requests_to(path)) == 1
    # the reconciler's sweep finds it not due: nothing can bring it back
    engine = create_db_engine(deployment.database_url)
    with transaction(session_factory(engine)) as session:
        (delivery,) = outbox.job_deliveries(session, job_id=uuid.UUID(job["id"]))
        assert delivery.id not in outbox.due_deliveries(session)
    engine.dispose()


def test_a_redirect_to_the_metadata_address_is_refused_and_recorded(
    deployment: Deployment,
) -> None:
    path = _path()
    Receiver.script[path] = [(307, {"location": "http://169.254.169.254/latest/meta-data/"})]
    job = deployment.submit(deployment.receiver + path).json()

    log = _wait_for(
        "the refusal recorded",
        lambda: (w := deployment.webhooks(job["id"]))["attempts"] and w,
        deployment.worker_log,
    )
    (attempt,) = log["attempts"]
    assert attempt["outcome"] == "refused" and attempt["status_code"] is None
    assert attempt["error"].startswith("redirect to http://169.254.169.254/")
    assert "metadata" in attempt["error"]
    assert log["webhooks"][0]["status"] == "exhausted"


def test_a_cancelled_job_posts_job_cancelled(deployment: Deployment) -> None:
    path = _path()
    Receiver.script[path] = [(204, {})]
    long_text = " ".join(f"Sentence number {n} of a long book." for n in range(120))
    job = deployment.submit(deployment.receiver + path, text=long_text).json()
    cancelled = httpx.post(f"{deployment.api}/v1/jobs/{job['id']}/cancel", headers=deployment.auth)
    assert cancelled.status_code == 200, cancelled.text

    (headers, body), *_ = _wait_for(
        "job.cancelled webhook", lambda: Receiver.requests_to(path), deployment.worker_log
    )
    payload = _verified(headers, body)
    assert payload["type"] == "job.cancelled" and payload["data"]["id"] == job["id"]


def test_the_key_default_callback_applies_when_a_job_names_none(deployment: Deployment) -> None:
    path = _path()
    Receiver.script[path] = [(200, {})]
    engine = create_db_engine(deployment.database_url)
    with transaction(session_factory(engine)) as session:
        key = create_key(session, name="defaulted", callback_url=deployment.receiver + path)[1]
    response = httpx.post(
        f"{deployment.api}/v1/jobs",
        json={"text": TEXT, "format": "wav"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["callback_url"] == deployment.receiver + path
    (headers, body), *_ = _wait_for(
        "the key's webhook", lambda: Receiver.requests_to(path), deployment.worker_log
    )
    assert _verified(headers, body)["data"]["id"] == response.json()["id"]
    # another tenant sees none of it
    other = httpx.get(
        f"{deployment.api}/v1/jobs/{response.json()['id']}/webhooks", headers=deployment.auth
    )
    assert other.status_code == 404
    engine.dispose()


@pytest.mark.parametrize(
    ("callback", "why"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("http:///hook", "has no host"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://10.0.0.7/hook", "private"),
        ("http://[::1]:8000/hook", "loopback"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
    ],
)
def test_a_bad_callback_url_is_a_422_naming_it_and_creates_nothing(
    deployment: Deployment, callback: str, why: str
) -> None:
    engine = create_db_engine(deployment.database_url)
    with transaction(session_factory(engine)) as session:
        before = session.query(Job).count()
    response = deployment.submit(callback)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "callback_url" and why in error["message"]
    assert "\n" not in error["message"]
    with transaction(session_factory(engine)) as session:
        assert session.query(Job).count() == before
    engine.dispose()


def test_without_allowed_networks_a_loopback_callback_is_refused_at_delivery(
    deployment: Deployment,
) -> None:
    """A delivery made while loopback was allowed, sent by a sender whose settings do not
    allow it: the refusal is an attempt like any other. And with
    VOICEBATCH_WEBHOOK_ALLOW_PRIVATE_HOSTS=true the same kind of delivery goes through."""
    factory = session_factory(create_db_engine(deployment.database_url))
    strict = deployment.settings.model_copy(update={"webhook_allowed_networks": ""})
    open_ = deployment.settings.model_copy(
        update={"webhook_allowed_networks": "", "webhook_allow_private_hosts": True}
    )
    results = {}
    for name, settings in (("strict", strict), ("open", open_)):
        path = _path()
        Receiver.script[path] = [(200, {})]
        delivery_id = _final_job_delivery(factory, deployment.receiver + path)
        results[name] = (deliver(factory, delivery_id=delivery_id, settings=settings), path)
    refused, strict_path = results["strict"]
    assert refused is not None and refused.outcome == "refused"
    assert Receiver.requests_to(strict_path) == []
    delivered, open_path = results["open"]
    assert delivered is not None and delivered.outcome == "delivered"
    ((headers, body),) = Receiver.requests_to(open_path)
    assert _verified(headers, body)["type"] == "job.cancelled"


def _final_job_delivery(factory: Any, callback: str) -> uuid.UUID:
    """A job of its own, cancelled (its webhook written in that transaction), and the
    delivery id; the worker's sweep is not involved: the delivery is taken here."""
    settings = load_settings(engine="test-tone", storage_url="/tmp/unused", output_format="wav")
    submitted = submit_job(
        factory,
        document_from_text("t", TEXT, max_chars=10_000),
        engine=engine_info(settings),
        settings=settings,
        kind="book",
        owner_id=uuid.uuid4(),
        idempotency_key=None,
        output_base=settings.resolved_storage_url,
        callback_url=callback,
    )
    with transaction(factory) as session:
        assert store.cancel_job(session, job_id=submitted.job_id)
        (delivery_id,) = outbox.pending_deliveries(session, job_id=submitted.job_id)
    return delivery_id


def test_the_outbox_row_is_written_with_the_state_change(deployment: Deployment) -> None:
    factory = session_factory(create_db_engine(deployment.database_url))
    delivery_id = _final_job_delivery(factory, deployment.receiver + "/unused")
    with transaction(factory) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        assert delivery.status == WebhookStatus.PENDING and delivery.event == "job.cancelled"
        assert json.loads(delivery.body)["type"] == "job.cancelled"


def test_the_reconciler_sweeps_a_delivery_whose_message_was_never_sent(
    deployment: Deployment,
) -> None:
    path = _path()
    Receiver.script[path] = [(200, {})]
    engine = create_db_engine(deployment.database_url)
    delivery_id = _final_job_delivery(session_factory(engine), deployment.receiver + path)
    app = create_celery(deployment.settings)
    try:
        assert sweep_webhooks(app, CeleryDispatcher(app)) >= 1
    finally:
        app.close()
    ((headers, body),) = _wait_for(
        "the swept webhook", lambda: Receiver.requests_to(path), deployment.worker_log
    )
    assert headers["webhook-id"] == outbox.webhook_id(delivery_id)
    assert _verified(headers, body)["type"] == "job.cancelled"
    engine.dispose()


def test_voicebatch_submit_sends_its_callback_url(deployment: Deployment, tmp_path: Path) -> None:
    path = _path()
    Receiver.script[path] = [(200, {})]
    book = tmp_path / "book.txt"
    book.write_text(TEXT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    common = ["--server", deployment.api, "--api-key", deployment.key]
    bad = subprocess.run(
        [VOICEBATCH, "submit", str(book), *common, "--callback-url", "http://10.0.0.1/x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode != 0 and "callback_url" in bad.stderr and "private" in bad.stderr
    done = subprocess.run(
        [VOICEBATCH, "submit", str(book), *common, "--callback-url", deployment.receiver + path],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    ((headers, body),) = _wait_for(
        "the CLI job's webhook", lambda: Receiver.requests_to(path), deployment.worker_log
    )
    assert _verified(headers, body)["data"]["id"] == job_id


def test_voicebatch_keys_create_checks_its_callback_url(deployment: Deployment) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env.update(
        VOICEBATCH_DATABASE_URL=deployment.database_url,
        VOICEBATCH_WEBHOOK_SECRET=SECRET,
        VOICEBATCH_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
    )

    def create(name: str, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VOICEBATCH, "keys", "create", name, "--callback-url", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    refused = create("metadata", "http://169.254.169.254/latest/meta-data/")
    assert refused.returncode == 2, refused.stderr
    assert "--callback-url" in refused.stderr and "metadata" in refused.stderr
    assert "Traceback" not in refused.stderr
    made = create("shop", deployment.receiver + "/shop")
    assert made.returncode == 0, made.stderr
    engine = create_db_engine(deployment.database_url)
    with transaction(session_factory(engine)) as session:
        row = authenticate(session, made.stdout.strip().splitlines()[-1])
        assert row is not None, (made.stdout, made.stderr)
        assert row.callback_url == deployment.receiver + "/shop"
        names = {k.name for k in list_keys(session)}
    assert "metadata" not in names
    engine.dispose()
