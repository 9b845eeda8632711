"""The API and its database (issue 21, defects 5 and 9). Database errors answered by what
they are: 503 with Retry-After only for a real outage (the database unreachable, a
connection lost, no free connection in time), 422 naming the problem for a value the
database refuses, a logged 500 for the rest, never a false outage that clients retry for
ever. The pool's size and timeout are settings; GETs past the pool's size wait on the
event loop, and one that waits too long is a 503, never a hang."""

from __future__ import annotations

import logging
import re
import threading
import time

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import exc

from api.app import ReadAdmission
from api.errors import add_error_handlers
from pipeline.config import load_settings
from pipeline.errors import InputError
from pipeline.state.db import PoolLimits, create_db_engine


class DriverError(Exception):
    """Stands in for the DBAPI driver's exception (psycopg2's), carried as `.orig`."""


def _app_raising(error: Exception) -> TestClient:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


def _dbapi(kind: type[exc.DBAPIError], message: str) -> exc.DBAPIError:
    return kind("SELECT secret FROM jobs WHERE id = %(id)s", {"id": 1}, DriverError(message))


@pytest.mark.parametrize(
    "error",
    [
        _dbapi(exc.OperationalError, "connection to server at 10.0.0.5 failed: refused"),
        _dbapi(exc.InterfaceError, "connection already closed"),
        exc.TimeoutError("QueuePool limit of size 2 overflow 1 reached, timed out"),
        exc.DisconnectionError("connection invalidated"),
    ],
    ids=["operational", "interface", "pool-timeout", "disconnection"],
)
def test_outages_answer_503_with_retry_after(error: Exception) -> None:
    response = _app_raising(error).get("/boom")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"]["message"] == (
        "the job database is unavailable; try again shortly"
    )
    assert "10.0.0.5" not in response.text  # hosts and users stay in the log


def test_a_lost_connection_reported_by_any_dbapi_error_is_an_outage() -> None:
    error = _dbapi(exc.DatabaseError, "server closed the connection unexpectedly")
    error.connection_invalidated = True
    response = _app_raising(error).get("/boom")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]


@pytest.mark.parametrize(
    ("driver_message", "shown"),
    [
        ("bigint out of range\n", "bigint out of range"),
        (
            "value too long for type character varying(500)\n",
            "value too long for type character varying(500)",
        ),
    ],
)
def test_values_the_database_refuses_are_client_errors(driver_message: str, shown: str) -> None:
    response = _app_raising(_dbapi(exc.DataError, driver_message)).get("/boom")
    assert response.status_code == 422, response.text
    assert "Retry-After" not in response.headers
    message = response.json()["error"]["message"]
    assert message == f"the job database refused a value: {shown}"
    assert "SELECT" not in message  # the statement is not the client's business


def test_the_database_message_shown_to_the_client_is_bounded_and_one_line() -> None:
    long = "value too long for type character varying(500)\nDETAIL: " + "x" * 10_000
    response = _app_raising(_dbapi(exc.DataError, long)).get("/boom")
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "\n" not in message and "DETAIL" not in message
    assert len(message) <= 300


@pytest.mark.parametrize(
    "error",
    [
        _dbapi(exc.IntegrityError, "duplicate key value violates unique constraint"),
        _dbapi(exc.ProgrammingError, "column jobs.nope does not exist"),
        _dbapi(exc.InternalError, "current transaction is aborted"),
        _dbapi(exc.DatabaseError, "something else"),
        exc.InvalidRequestError("This session is in 'inactive' state"),
    ],
    ids=["integrity", "programming", "internal", "database", "orm"],
)
def test_other_database_errors_are_logged_500s_not_outages(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = _app_raising(error).get("/boom")
    assert response.status_code == 500, response.text
    assert "Retry-After" not in response.headers
    assert "unavailable" not in response.text
    assert any(r.exc_info for r in caplog.records), "a 500 is logged with its traceback"


# --- pool limits ----------------------------------------------------------------------


def test_pool_limits_come_from_the_settings_and_reach_the_engine() -> None:
    settings = load_settings(db_pool_size=2, db_max_overflow=1, db_pool_timeout_seconds=0.5)
    limits = PoolLimits.of(settings)
    assert limits == PoolLimits(size=2, overflow=1, timeout=0.5)
    engine = create_db_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none", pool=limits)
    try:
        assert engine.pool.size() == 2  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 1  # type: ignore[attr-defined]
        assert engine.pool._timeout == 0.5  # type: ignore[attr-defined]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VOICEBATCH_DB_POOL_SIZE", "0"),
        ("VOICEBATCH_DB_MAX_OVERFLOW", "-1"),
        ("VOICEBATCH_DB_POOL_TIMEOUT_SECONDS", "0"),
        ("VOICEBATCH_DB_POOL_SIZE", "many"),
    ],
)
def test_pool_settings_are_validated(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=re.escape(f"({name})")):
        load_settings()


# --- read admission -------------------------------------------------------------------


def _admitting_one_read(timeout: float) -> FastAPI:
    app = FastAPI()
    add_error_handlers(app)
    app.add_middleware(ReadAdmission, limit=1, timeout=timeout)

    @app.get("/v1/slow")
    async def slow() -> dict[str, str]:
        await anyio.sleep(1.0)
        return {"status": "done"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/write")
    async def write() -> dict[str, str]:
        return {"status": "written"}

    return app


def test_a_get_waiting_for_a_slot_past_the_timeout_is_a_503_while_healthz_answers() -> None:
    with TestClient(_admitting_one_read(timeout=0.2)) as client:
        first: list[int] = []
        holder = threading.Thread(target=lambda: first.append(client.get("/v1/slow").status_code))
        holder.start()
        time.sleep(0.3)  # the one slot is taken
        started = time.perf_counter()
        waited = client.get("/v1/slow")
        took = time.perf_counter() - started
        healthz = client.get("/healthz")
        write = client.post("/v1/write")
        holder.join()
    assert waited.status_code == 503, waited.text
    assert waited.headers["Retry-After"] == "5"
    assert waited.json()["error"]["message"] == "the API is busy; try again shortly"
    assert took < 0.9, "bounded by the timeout, not by the request ahead"
    assert healthz.status_code == 200 and write.status_code == 200
    assert first == [200]


def test_gets_past_the_limit_wait_their_turn_and_all_answer() -> None:
    with TestClient(_admitting_one_read(timeout=10)) as client:
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(client.get("/v1/slow").status_code))
            for _ in range(3)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.perf_counter() - started
    assert statuses == [200, 200, 200]
    assert took >= 2.9, "one at a time: the limit held"
