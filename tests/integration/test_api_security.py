"""The review's gaps in the submit API (issue 20, section 4), each against real services:
the rate limit across a minute boundary and for callers without valid credentials, an
Idempotency-Key reused for another request, the cache-hit count as a cross-tenant
oracle, /readyz probing on every call, the audit log, and scopes on API keys."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from api.limits import RateLimiter
from pipeline.engines.testing import TestToneEngine
from pipeline.errors import FieldError
from pipeline.render.messages import render_chunk_ids
from pipeline.render.renderer import ChunkRenderer
from pipeline.state.db import transaction
from pipeline.state.keys import create_key
from pipeline.state.models import ApiKey, Chunk, Job
from pipeline.storage.factory import open_store
from tests.integration import test_api as shared
from tests.integration.test_api import TEXT, Api
from tests.support.services import private_redis_url

pytestmark = pytest.mark.integration

# test_api's fixtures: its app on the test's own database, Redis and broker, and keys.
redis_dbs, keys, make_api, api = shared.redis_dbs, shared.keys, shared.make_api, shared.api


# --- rate limit: no double burst across a minute boundary ---------------------------------


@pytest.fixture
def limits_redis() -> Any:
    client = redis.Redis.from_url(private_redis_url(11))
    client.flushdb()
    yield client
    client.close()


def test_rate_limit_holds_across_a_minute_boundary(limits_redis: redis.Redis) -> None:
    """The limit, sent 0.1 s before a minute boundary and again 0.1 s after it: a
    calendar-minute window let all 240 through; at most 120 may pass in any minute."""
    limiter = RateLimiter(limits_redis, per_minute=120)
    boundary = 1_800_000_000.0  # a whole minute (divisible by 60)
    before = [limiter.hit("alice", now=boundary - 0.1 + i / 1000) for i in range(120)]
    after = [limiter.hit("alice", now=boundary + 0.1 + i / 1000) for i in range(120)]
    assert before.count(None) == 120
    assert after.count(None) == 0, f"{after.count(None)} more passed after the boundary"
    # The refusal says when the next request may pass: half a second at 120 a minute.
    assert after[0] == 1
    assert limiter.hit("alice", now=boundary - 0.1 + 0.5) is None
    # Another key has its own allowance.
    assert limiter.hit("bob", now=boundary + 0.1) is None


def test_rate_limit_spreads_the_allowance_over_the_minute(limits_redis: redis.Redis) -> None:
    limiter = RateLimiter(limits_redis, per_minute=60)
    start = 1_800_000_030.0
    assert [limiter.hit("k", now=start) for _ in range(60)].count(None) == 60
    assert limiter.hit("k", now=start + 0.5) is not None
    # One more request a second comes back, never a whole new window at once.
    assert limiter.hit("k", now=start + 1.0) is None
    assert limiter.hit("k", now=start + 1.1) is not None
    assert [limiter.hit("k", now=start + 30.0) for _ in range(40)].count(None) == 29


def test_rate_limit_uses_the_redis_clock(limits_redis: redis.Redis) -> None:
    limiter = RateLimiter(limits_redis, per_minute=3)
    assert [limiter.hit("clock") for _ in range(3)] == [None, None, None]
    wait = limiter.hit("clock")
    assert wait is not None and 1 <= wait <= 20
    assert 0 < limits_redis.pttl("vb:gcra:clock") <= 61_000


def test_requests_without_valid_credentials_are_limited_per_address(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(api_rate_limit_anonymous=3)
    for headers in ({}, api.auth("vb_guessed"), api.auth("carol")):  # none, unknown, revoked
        assert api.client.get("/v1/jobs", headers=headers).status_code == 401
    refused = api.client.get("/v1/jobs", headers=api.auth("vb_another_guess"))
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    # A valid key is counted on its own, not against the address.
    assert api.client.get("/v1/jobs", headers=api.auth("alice")).status_code == 200


# --- Idempotency-Key: the whole request, not its text ----------------------------------------


def test_idempotency_key_reused_with_another_format_is_422(api: Api) -> None:
    first = api.submit({"text": TEXT, "format": "mp3"}, idempotency="order-7")
    assert first.status_code == 201, first.text
    again = api.submit({"text": TEXT, "format": "mp3"}, idempotency="order-7")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    for other in ({"format": "wav"}, {"format": "mp3", "loudness_preset": "podcast"}):
        changed = api.submit({"text": TEXT, **other}, idempotency="order-7")
        assert changed.status_code == 422, (other, changed.text)
        error = changed.json()["error"]
        assert error["field"] == "Idempotency-Key" and "differ" in error["message"]
    assert api.scalar(select(func.count()).select_from(Job)) == 1  # nothing half-created


# --- cache hits: no oracle across tenants ------------------------------------------------------


def _render(api: Api, job_id: str) -> None:
    """What a render worker does with the job's chunks (the test-tone engine)."""
    renderer = ChunkRenderer(
        factory=api.factory,
        store_=open_store(api.settings.resolved_storage_url, api.settings),
        engine=TestToneEngine(),
        settings=api.settings,
        index=None,
    )
    with transaction(api.factory) as session:
        ids = list(session.scalars(select(Chunk.id).where(Chunk.job_id == uuid.UUID(job_id))))
    render_chunk_ids(renderer, job_id=uuid.UUID(job_id), chunk_ids=ids)


def _chunks(api: Api, who: str, job_id: str) -> dict[str, int]:
    response = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(who))
    assert response.status_code == 200, response.text
    chunks: dict[str, int] = response.json()["chunks"]
    return chunks


def test_cached_count_says_nothing_of_other_tenants(api: Api) -> None:
    secret = "The merger closes on Friday at nine."
    alice_job = api.submit({"text": secret}, who="alice").json()["id"]
    _render(api, alice_job)
    assert _chunks(api, "alice", alice_job)["cached"] == 0
    bob_job = api.submit({"text": secret}, who="bob").json()["id"]
    _render(api, bob_job)
    bob = _chunks(api, "bob", bob_job)
    # Bob's chunk came from Alice's audio (one rendering for everyone)...
    assert api.scalar(select(func.count()).where(Chunk.cache_hit.is_(True))) == bob["total"]
    # ...but Bob is told what he would be told had nobody said it before him.
    assert bob["done"] == bob["total"] and bob["cached"] == 0, bob
    # His own repeat is a cache hit he may see.
    again = api.submit({"text": secret}, who="bob").json()["id"]
    _render(api, again)
    assert _chunks(api, "bob", again)["cached"] == bob["total"]


def test_cached_count_counts_repeats_within_a_job(api: Api) -> None:
    line = "A line said twice."
    job = api.submit({"text": f"{line}\n\n{line}"}, who="alice").json()["id"]
    _render(api, job)
    chunks = _chunks(api, "alice", job)
    assert chunks["done"] == 2 and chunks["cached"] == 1


# --- /readyz: probed at most every few seconds -------------------------------------------------


class CountingPings:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pings = 0

    def render(self, job_id: uuid.UUID, groups: Any) -> None:
        self.inner.render(job_id, groups)

    def ping(self, timeout: float = 3.0) -> None:
        self.pings += 1
        self.inner.ping(timeout)


def test_readyz_probes_at_most_every_few_seconds(api: Api) -> None:
    context = api.client.app.state.context  # type: ignore[attr-defined]
    counting = CountingPings(context.dispatcher)
    context.dispatcher = counting
    answers = [api.client.get("/readyz") for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert counting.pings == 1


# --- the audit log ---------------------------------------------------------------------------


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "voicebatch.audit"]


def test_audit_log_has_a_line_per_authenticated_request(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebatch.audit")
    created = api.submit({"text": TEXT})
    job_id = created.json()["id"]
    api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("bob"))  # not bob's: 404
    api.client.get("/v1/jobs", headers=api.auth("vb_not_a_key"))
    lines = _audit_lines(caplog)
    prefix = api.keys["alice"][:11]
    assert lines[0] == {
        "event": "request",
        "principal": f"key:{prefix}",
        "tenant": lines[0]["tenant"],
        "method": "POST",
        "route": "/v1/jobs",
        "job": job_id,
        "status": 201,
        "client": "testclient",
    }
    assert lines[1]["route"] == "/v1/jobs/{job_id}" and lines[1]["status"] == 404
    assert lines[1]["job"] == job_id and lines[1]["principal"] == f"key:{api.keys['bob'][:11]}"
    assert lines[2]["event"] == "auth_failed" and lines[2]["client"] == "testclient"
    assert "vb_not_a_key" not in json.dumps(lines)  # never a credential


# --- scopes on API keys ---------------------------------------------------------------------


def test_key_scopes_decide_what_it_may_do(api: Api) -> None:
    with transaction(api.factory) as session:
        reader = create_key(session, name="reader", scopes=["jobs:read"])[1]
        admin = create_key(session, name="root", scopes=["admin"])[1]
    refused = api.client.post("/v1/jobs", json={"text": TEXT}, headers=api.auth(reader))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == "this key lacks the jobs:write scope"
    assert api.client.get("/v1/jobs", headers=api.auth(reader)).status_code == 200
    made = api.client.post("/v1/jobs", json={"text": TEXT}, headers=api.auth(admin))
    assert made.status_code == 201, made.text


def test_unknown_scope_creates_no_key(api: Api) -> None:
    with pytest.raises(FieldError) as raised, transaction(api.factory) as session:
        create_key(session, name="typo", scopes=["jobs:read", "jobs:delete"])
    assert raised.value.field == "scope" and "jobs:delete" in raised.value.message
    assert api.scalar(select(func.count()).where(ApiKey.name == "typo")) == 0
