"""The spot watcher against a fake metadata server: it speaks IMDSv2 and GCP's API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.spot_server import FakeMetadata
from workers.spot import SpotNotice, SpotWatcher


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    fake = FakeMetadata()
    yield fake
    fake.close()


def _watch(
    provider: str, metadata: FakeMetadata
) -> tuple[SpotWatcher, threading.Event, list[SpotNotice]]:
    seen: list[SpotNotice] = []
    fired = threading.Event()

    def on_notice(notice: SpotNotice) -> None:
        seen.append(notice)
        fired.set()

    watcher = SpotWatcher(provider, on_notice=on_notice, base_url=metadata.url, poll_seconds=0.1)
    watcher.start()
    return watcher, fired, seen


def test_aws_interruption_notice_is_seen_with_an_imdsv2_token(metadata: FakeMetadata) -> None:
    watcher, fired, seen = _watch("aws", metadata)
    time.sleep(0.4)
    assert not fired.is_set()  # 404 until the instance is marked
    metadata.aws_action = '{"action": "terminate", "time": "2026-11-25T06:30:00Z"}'
    assert fired.wait(2)
    watcher.join(2)
    assert seen == [SpotNotice("aws", "interruption", metadata.aws_action)]
    assert "/latest/api/token" in metadata.paths  # IMDSv2: a token first, every time


def test_aws_rebalance_recommendation_is_a_hint_once_and_does_not_drain(
    metadata: FakeMetadata,
) -> None:
    """It stays posted: draining on it would restart the worker into it for ever. It is
    reported once; the interruption notice that may follow still drains."""
    metadata.aws_rebalance = '{"noticeTime": "2026-11-25T06:20:00Z"}'
    hints: list[SpotNotice] = []
    seen: list[SpotNotice] = []
    fired = threading.Event()

    def on_notice(notice: SpotNotice) -> None:
        seen.append(notice)
        fired.set()

    watcher = SpotWatcher(
        "aws", on_notice=on_notice, on_hint=hints.append, base_url=metadata.url, poll_seconds=0.05
    )
    watcher.start()
    time.sleep(0.6)  # many polls, all seeing the recommendation
    assert not fired.is_set() and [h.kind for h in hints] == ["rebalance"]
    metadata.aws_action = '{"action": "terminate", "time": "2026-11-25T06:30:00Z"}'
    assert fired.wait(2)
    assert [n.kind for n in seen] == ["interruption"] and len(hints) == 1


def test_gcp_preemption_is_seen_with_the_metadata_flavor_header(metadata: FakeMetadata) -> None:
    _watcher, fired, seen = _watch("gcp", metadata)
    time.sleep(0.4)
    assert not fired.is_set()
    metadata.gcp_preempted = True
    assert fired.wait(2)
    assert seen == [SpotNotice("gcp", "preemption", "TRUE")]


def test_an_unreachable_metadata_server_is_no_notice() -> None:
    watcher = SpotWatcher(
        "aws", on_notice=lambda _n: None, base_url="http://127.0.0.1:9", poll_seconds=0.1
    )
    assert watcher.check() is None
