"""The retry policy: backoff with jitter, and what a task does with each kind of error."""

from __future__ import annotations

from typing import Any

import pytest
from celery.exceptions import Reject
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

import workers.retry_policy as retry_policy
from pipeline.backoff import backoff_delay, backoff_delays
from pipeline.config import load_settings
from pipeline.errors import InputError, RecordGone, RetryableError
from workers.app import create_celery


def test_backoff_grows_to_its_cap_with_jitter_and_stops_at_its_budget() -> None:
    first = [backoff_delay(1, base=1.0, cap=8.0) for _ in range(200)]
    fourth = [backoff_delay(4, base=1.0, cap=8.0) for _ in range(200)]
    late = [backoff_delay(20, base=1.0, cap=8.0) for _ in range(200)]
    assert min(first) >= 0.5 and max(first) <= 1.0 and len(set(first)) > 150  # jittered
    assert min(fourth) >= 4.0 and max(fourth) <= 8.0
    assert min(late) >= 4.0 and max(late) <= 8.0  # capped
    delays = list(backoff_delays(budget=20.0, base=1.0, cap=8.0))
    assert sum(delays) <= 20.0 and len(delays) >= 3
    assert list(backoff_delays(budget=0.0)) == []


@pytest.fixture
def run_task(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a task body through the real adapter, with sleeps recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(retry_policy.time, "sleep", slept.append)
    app = create_celery(load_settings(broker_url="redis://127.0.0.1:1/0", task_retry_seconds=10))

    def run(body: Any) -> list[float]:
        app.retry_policy.wrap("voicebatch.test", body, lambda: app)("job")
        return slept

    run.app = app  # type: ignore[attr-defined]
    run.slept = slept  # type: ignore[attr-defined]
    return run


def test_passing_trouble_is_retried_in_place_with_growing_pauses(run_task: Any) -> None:
    calls: list[str] = []

    def flaky(_app: object, job: str) -> None:
        calls.append(job)
        if len(calls) == 1:
            raise RetryableError("S3 request failed: 503 SlowDown")
        if len(calls) == 2:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    slept = run_task(flaky)
    assert calls == ["job"] * 3 and len(slept) == 2 and slept[1] > slept[0] / 2


def test_no_free_database_connection_in_time_is_retried_in_place(run_task: Any) -> None:
    """SQLAlchemy's pool TimeoutError is no DBAPIError: a worker whose pool is briefly
    exhausted waits and tries again rather than failing the task."""
    calls: list[str] = []

    def busy(_app: object, job: str) -> None:
        calls.append(job)
        if len(calls) == 1:
            raise PoolTimeout("QueuePool limit of size 2 overflow 1 reached")

    slept = run_task(busy)
    assert calls == ["job", "job"] and len(slept) == 1


def test_trouble_past_the_budget_hands_the_message_back(run_task: Any) -> None:
    def down(_app: object, _job: str) -> None:
        raise RetryableError("database unreachable")

    with pytest.raises(Reject) as rejected:
        run_task(down)
    assert rejected.value.requeue
    *in_place, before_requeue = run_task.slept
    assert len(in_place) >= 3 and sum(in_place) <= 10  # VOICEBATCH_TASK_RETRY_SECONDS
    assert before_requeue <= retry_policy.REQUEUE_PAUSE_SECONDS


def test_a_draining_worker_hands_back_at_once(run_task: Any) -> None:
    calls: list[int] = []

    def down(_app: object, _job: str) -> None:
        calls.append(1)
        raise RetryableError("database unreachable")

    run_task.app.draining.set()
    with pytest.raises(Reject):
        run_task(down)
    assert calls == [1]  # no retry in place: the worker is stopping


def test_a_missing_job_drops_the_message_and_input_errors_are_not_retried(run_task: Any) -> None:
    calls: list[str] = []

    def gone(_app: object, job: str) -> None:
        calls.append(job)
        raise RecordGone("no job")

    run_task(gone)  # returns: the message is acked and dropped
    assert calls == ["job"]

    def not_mine(_app: object, job: str) -> None:
        calls.append(job)
        raise InputError("job wants engine maya1; this worker runs piper")

    run_task(not_mine)  # acked: no worker can do better, so it is never looped (16.8)
    assert calls == ["job", "job"]  # tried once, not retried, not requeued
