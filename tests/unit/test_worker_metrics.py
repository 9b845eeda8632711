"""The workers' metrics: the GPU rule, failures and retries by reason, reconciler actions,
the price, and the `published_at` stamp the exporter reads queue age from."""

from __future__ import annotations

import time
import uuid

import pytest
from celery.exceptions import Reject
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import load_settings
from pipeline.errors import InputError, RetryableError
from pipeline.state.reconcile import DueWork
from workers.app import counting_failures
from workers.gpu import GpuReading, gpu_metric_families, read_gpus
from workers.metrics import ProcessInfo, failure_reason, worker_metrics, worker_name
from workers.queue_age import PUBLISHED_AT, _published_at, stamp_published_at


def collected(collector: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_cpu_worker_says_it_has_no_gpu_and_invents_no_gpu_series() -> None:
    assert read_gpus() == []  # this machine: no NVML, no CUDA
    info = ProcessInfo(load_settings(worker_hourly_price=2.5), gpus=True)
    found = collected(info)
    assert found[("voicebatch_gpus", ())] == 0
    assert not [name for name, _ in found if name.startswith("voicebatch_gpu_")]
    assert found[("voicebatch_worker_hourly_price", ())] == 2.5
    assert abs(found[("voicebatch_process_started_timestamp_seconds", ())] - time.time()) < 60


def test_each_gpu_gets_its_utilisation_and_memory_and_torch_only_gpus_no_utilisation() -> None:
    readings = [GpuReading(0, 2e9, 8e9, 0.75), GpuReading(1, 1e9, 8e9, None)]

    class Families:
        def collect(self) -> object:
            return gpu_metric_families(readings)

    found = collected(Families())
    assert found[("voicebatch_gpus", ())] == 2
    assert found[("voicebatch_gpu_utilization_ratio", (("gpu", "0"),))] == 0.75
    assert ("voicebatch_gpu_utilization_ratio", (("gpu", "1"),)) not in found
    assert found[("voicebatch_gpu_memory_used_bytes", (("gpu", "1"),))] == 1e9
    assert found[("voicebatch_gpu_memory_total_bytes", (("gpu", "0"),))] == 8e9


def test_a_price_that_is_not_a_number_or_negative_is_one_line_naming_the_setting() -> None:
    for price in ("1,20 EUR", "-1", "nan"):
        with pytest.raises(InputError) as caught:
            load_settings(worker_hourly_price=price)
        assert "VOICEBATCH_WORKER_HOURLY_PRICE" in caught.value.message
        assert "\n" not in caught.value.message
    assert load_settings(worker_hourly_price="0.85").worker_hourly_price == 0.85


def test_failures_are_counted_by_task_and_reason_and_still_raised() -> None:
    failures = worker_metrics().task_failures

    def requeued() -> None:
        try:
            raise RetryableError("storage unreachable")
        except RetryableError as exc:
            raise Reject(str(exc), requeue=True) from exc

    task = counting_failures("voicebatch.test_task", lambda: requeued())
    before = failures.labels("voicebatch.test_task", "RetryableError")._value.get()
    with pytest.raises(Reject):
        task()
    assert failures.labels("voicebatch.test_task", "RetryableError")._value.get() == before + 1
    counting_failures("voicebatch.test_task", lambda: None)()  # a success counts nothing
    assert failures.labels("voicebatch.test_task", "RetryableError")._value.get() == before + 1
    assert failure_reason(ValueError("x")) == "ValueError"


def test_reconciler_rounds_count_each_action_and_when_it_last_acted() -> None:
    metrics = worker_metrics()
    actions = metrics.reconcile_actions
    before = {a: actions.labels(a)._value.get() for a in ("chunks_republished", "jobs_finalized")}
    due = DueWork(
        render={uuid.uuid4(): [[uuid.uuid4(), uuid.uuid4()], [uuid.uuid4()]]},
        finalize=[uuid.uuid4()],
    )
    metrics.count_reconcile(due)
    assert actions.labels("chunks_republished")._value.get() == before["chunks_republished"] + 3
    assert actions.labels("jobs_finalized")._value.get() == before["jobs_finalized"] + 1
    assert time.time() - metrics.reconciler_last_round._value.get() < 60
    standby = metrics.reconcile_rounds.labels("standby")._value.get()
    metrics.count_reconcile(None)  # another reconciler holds the lock: no action counted
    assert metrics.reconcile_rounds.labels("standby")._value.get() == standby + 1


def test_every_published_message_says_when_and_a_set_stamp_is_kept() -> None:
    headers: dict[str, object] = {"task": "voicebatch.render_chunks"}
    stamp_published_at(headers=headers, body=None)
    assert abs(float(headers[PUBLISHED_AT]) - time.time()) < 5  # type: ignore[arg-type]
    kept: dict[str, object] = {PUBLISHED_AT: 12.0}
    stamp_published_at(headers=kept)
    assert kept[PUBLISHED_AT] == 12.0
    assert _published_at(b'{"headers": {"published_at": 5.5}}') == 5.5
    assert _published_at(b'{"headers": {}}') is None  # a message from before the header
    assert _published_at(b"not json") is None


def test_a_starting_worker_makes_its_series_at_zero_so_the_first_work_is_an_increase() -> None:
    from prometheus_client import REGISTRY

    worker_metrics().prepare(engine="piper")
    text = generate_latest(REGISTRY).decode()
    host = worker_name()
    assert f'voicebatch_audio_seconds_total{{engine="piper",worker="{host}"}}' in text
    for outcome in ("rendered", "cached", "failed", "lost"):
        assert f'voicebatch_chunks_total{{outcome="{outcome}"}}' in text
    assert 'voicebatch_jobs_finished_total{status="partially_failed"}' in text
