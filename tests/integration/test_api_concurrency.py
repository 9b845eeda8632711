"""The API under many concurrent requests, as a real `voicebatch api` process on
PostgreSQL with a deliberately small connection pool (2 + 1 overflow): every request
answers, none waits on a connection another request holds across threads, and /healthz
keeps answering fast meanwhile (issue 21, defect 5: 80 parallel GETs once deadlocked the
pool; /healthz then took 27 s). And the database's own errors, raised for real, answered
by what they are: 503 only for an outage (defect 9)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.errors import add_error_handlers
from pipeline.state.db import PoolLimits, create_db_engine, session_factory, transaction
from tests.support.api_process import ApiProcess, probing, running_api
from tests.support.services import private_redis_url

pytestmark = pytest.mark.integration

REQUESTS = 300
BURST_BOUND_S = 90.0  # generous: a busy 2-core machine; the deadlock took 30 s per wave
HEALTHZ_BOUND_S = 0.100  # the bound for a liveness probe under load


@pytest.fixture
def small_pool_api(pg_migrated_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    """`voicebatch api` on the test's database with a pool of 2 + 1 overflow."""
    settings = {
        "VOICEBATCH_BROKER_URL": private_redis_url(),  # rate-limit counters only
        "VOICEBATCH_API_RATE_LIMIT": "1000000",
        "VOICEBATCH_DB_POOL_SIZE": "2",
        "VOICEBATCH_DB_MAX_OVERFLOW": "1",
        "VOICEBATCH_DB_POOL_TIMEOUT_SECONDS": "60",
    }
    with running_api(pg_migrated_url, tmp_path, settings) as api:
        yield api


async def _burst(server: ApiProcess) -> tuple[list[int | str], float]:
    """Every answer's status, or the name of the error that stood in for it (a timeout)."""
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    headers = {"Authorization": f"Bearer {server.key}"}
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, limits=limits, timeout=BURST_BOUND_S
    ) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.get("/v1/jobs", params={"limit": 1}) for _ in range(REQUESTS)),
            return_exceptions=True,
        )
        statuses = [
            r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in responses
        ]
        return statuses, time.perf_counter() - started


def test_300_concurrent_gets_all_answer_while_healthz_stays_fast(
    small_pool_api: ApiProcess, tmp_path: Path
) -> None:
    # The prober is a process of its own, so the load generator's event loop does not
    # add to the latency it measures.
    with probing(small_pool_api, tmp_path / "probes.txt") as prober:
        started = time.monotonic()
        statuses, elapsed = asyncio.run(_burst(small_pool_api))
        probes = prober.probes_overlapping(started, time.monotonic())
    latencies = sorted(probe.seconds for probe in probes)
    summary = (
        f"{len(statuses)} GETs in {elapsed:.1f} s: "
        f"{ {s: statuses.count(s) for s in sorted(set(statuses), key=str)} }; "
        f"{len(probes)} /healthz probes, median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    print(summary)
    log = small_pool_api.log.read_text(errors="replace")[-3000:]
    assert statuses == [200] * REQUESTS, f"{summary}\n{log}"
    assert elapsed < BURST_BOUND_S, summary
    assert len(probes) >= 3, summary  # it really probed while the burst ran
    assert all(probe.status == 200 for probe in probes), f"{summary}: {probes}"
    assert latencies[-1] < HEALTHZ_BOUND_S, summary


# --- database errors from the real driver ---------------------------------------------


def _app_querying(url: str, pool: PoolLimits, sql: str) -> tuple[TestClient, Any]:
    """A bare app with the API's error handlers and one route that runs `sql`."""
    engine = create_db_engine(url, pool=pool)
    factory = session_factory(engine)
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/query")
    def query() -> dict[str, str]:
        with transaction(factory) as session:
            return {"value": str(session.scalar(text(sql)))}

    return TestClient(app, raise_server_exceptions=False), engine


def test_no_free_connection_in_time_is_a_503_with_retry_after(pg_migrated_url: str) -> None:
    client, engine = _app_querying(
        pg_migrated_url, PoolLimits(size=1, overflow=0, timeout=0.2), "SELECT 1"
    )
    try:
        with engine.connect():  # the pool's only connection, held
            started = time.perf_counter()
            response = client.get("/query")
            waited = time.perf_counter() - started
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert waited < 10, "bounded by the pool timeout, not a hang"
        assert client.get("/query").json() == {"value": "1"}  # and fine once it is free
    finally:
        engine.dispose()


def test_a_value_the_database_refuses_is_a_422_not_an_outage(pg_migrated_url: str) -> None:
    client, engine = _app_querying(
        pg_migrated_url, PoolLimits(), "SELECT CAST(9223372036854775808 AS bigint)"
    )
    try:
        response = client.get("/query")
    finally:
        engine.dispose()
    assert response.status_code == 422, response.text
    assert "Retry-After" not in response.headers
    assert response.json()["error"]["message"] == (
        "the job database refused a value: bigint out of range"
    )


def test_an_out_of_range_offset_is_refused_not_answered_as_an_outage(
    small_pool_api: ApiProcess,
) -> None:
    response = httpx.get(
        f"{small_pool_api.url}/v1/jobs",
        params={"offset": "9223372036854775808"},
        headers={"Authorization": f"Bearer {small_pool_api.key}"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert "Retry-After" not in response.headers
