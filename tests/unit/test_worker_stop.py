"""A worker's stop is bounded by its grace, in every process of the worker (the pool's
children included), and the grace fits in the spot provider's notice. The whole worker
under SIGTERM, with both pools, is the fault suite's (tests/chaos/test_stop.py)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from pipeline.config import Settings
from workers.spot import effective_grace
from workers.stop import WorkerStop, requeue_held_messages


@pytest.mark.parametrize(
    ("provider", "grace", "poll", "expected"),
    [
        ("none", 60, 5.0, 60.0),
        ("aws", 60, 5.0, 60.0),  # two minutes' notice: the default fits
        ("aws", 600, 5.0, 110.0),
        ("gcp", 60, 5.0, 20.0),  # 30 s notice - a poll - the stop's own margin
        ("gcp", 60, 1.0, 24.0),
        ("gcp", 10, 5.0, 10.0),
    ],
)
def test_the_grace_never_exceeds_the_providers_notice_minus_a_margin(
    provider: str, grace: int, poll: float, expected: float
) -> None:
    settings = Settings(
        spot_provider=provider,  # type: ignore[arg-type]
        worker_grace_seconds=grace,
        spot_poll_seconds=poll,
    )
    assert effective_grace(settings) == expected


def _stop(grace: float) -> tuple[WorkerStop, threading.Event, list[tuple[float, int]]]:
    exits: list[tuple[float, int]] = []
    ended = threading.Event()

    def exit_(code: int) -> None:
        exits.append((time.monotonic(), code))
        ended.set()

    draining = threading.Event()
    stop = WorkerStop(grace=grace, draining=draining, release=lambda: 3, exit=exit_)
    return stop, ended, exits


@pytest.mark.parametrize("child", [False, True])
def test_a_running_task_is_cut_off_before_the_grace_ends(child: bool) -> None:
    stop, ended, exits = _stop(grace=2.0)  # margin 0.5 s
    stop.watch(child=child)
    time.sleep(0.3)
    assert not stop.draining.is_set() and not exits  # nothing until the stop is asked
    asked = time.monotonic()
    stop.request()
    assert stop.draining.wait(1)  # tasks drain at once
    assert ended.wait(5)
    ((at, code),) = exits
    cut_off = 2.0 - 0.5 * (2 if child else 1)  # children before the main process
    assert code == 0 and cut_off - 0.05 <= at - asked < 2.0, at - asked


def test_the_request_reaches_a_forked_pool_child_which_exits_by_its_deadline() -> None:
    """Only the main process hears SIGTERM: the request crosses into the pool's children
    through the flag they inherit at fork."""
    stop = WorkerStop(grace=2.0, draining=threading.Event(), release=lambda: 0)

    def child() -> None:  # a pool child: watches, and is cut off with os._exit
        stop.watch(child=True)
        time.sleep(60)
        os._exit(3)  # not reached when the cut-off works

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    try:
        time.sleep(0.5)
        assert process.is_alive()
        asked = time.monotonic()
        stop.request()
        process.join(5)
        took = time.monotonic() - asked
        assert process.exitcode == 0 and took < 2.0, (process.exitcode, took)
    finally:
        if process.is_alive():
            process.kill()


def test_outside_a_worker_no_message_is_held() -> None:
    assert requeue_held_messages() == 0
