"""A real Prometheus (Debian's package) scrapes a real deployment while a job renders: the
API's metrics port, a render and an assemble worker, the reconciler and the exporter (and
one speech request after the job).
With the recording and alerting rules of deploy/prometheus/ loaded, every Grafana panel
query and every recording rule must return data: no dashboard shows a metric that does
not exist. Prometheus cannot be installed on a laptop without it: skipped there, failed
in CI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.services import IN_CI, free_port, wait_for_http
from tests.support.stack import Deployments, Stack, metrics_url

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
BOOK = "\n\n".join(
    f"## Chapter {n}\n\n"
    + " ".join(f"Sentence {i} of chapter {n} is read at an even pace." for i in range(6))
    for n in range(1, 4)
)
# Per-GPU series exist only on GPU workers (workers/gpu.py); on this CPU deployment a
# panel over them may be empty, provided every worker says it has no GPU.
GPU_ONLY = ("voicebatch_gpu_utilization_ratio", "voicebatch_gpu_memory_")


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus not installed (apt-get install prometheus)"
        if IN_CI:
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(message)
    return found


def panel_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                found.append((f"{board['title']} / {panel['title']}", target["expr"]))
    return found


def recording_rules() -> list[str]:
    data = yaml.safe_load((RULES / "recording.yml").read_text())
    return [rule["record"] for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def stack(deployments: Deployments, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_binary()
    api_metrics_port = free_port()
    with deployments.stack(
        tmp_path_factory.mktemp("monitoring"),
        bucket_prefix="mon",
        broker_db=12,
        redis_db=13,
        settings={
            "VOICEBATCH_ENGINE": "piper",
            "VOICEBATCH_DYNAMIC_BATCHING": "on",  # the batcher's metrics (batch fill)
            "VOICEBATCH_WORKER_HOURLY_PRICE": "1.5",
            "VOICEBATCH_API_METRICS_PORT": str(api_metrics_port),
        },
    ) as running:
        running.metrics["api"] = metrics_url(api_metrics_port)
        reconciler_port, exporter_port = free_port(), free_port()
        running.start_with_metrics(
            "reconciler",
            "reconcile",
            "--interval",
            "2",
            port=reconciler_port,
            env={"VOICEBATCH_WORKER_METRICS_PORT": str(reconciler_port)},
        )
        running.start_with_metrics(
            "exporter",
            *("exporter", "--port", str(exporter_port), "--address", "127.0.0.1"),
            *("--interval", "1"),
            port=exporter_port,
        )
        yield running


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "recording.yml"), str(RULES / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": name,
                "static_configs": [{"targets": [url.split("/")[2]]}],
            }
            for name, url in stack.metrics.items()
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/-/ready", process, lambda: (folder / "prometheus.log").read_text())
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=30)
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", (expr, body)
    result = body["data"]["result"]
    return result if isinstance(result, list) else [result]


def test_every_dashboard_query_and_recording_rule_returns_data_while_a_job_runs(
    stack: Stack, prometheus: str, tmp_path: Path
) -> None:
    # every target is up before the job starts, so the job's whole life is scraped
    deadline = time.monotonic() + 60
    while len([t for t in query(prometheus, "up == 1")]) < len(stack.metrics):
        assert time.monotonic() < deadline, query(prometheus, "up")
        time.sleep(1)
    # /metrics is not on the API's port any more
    assert httpx.get(f"{stack.api_url}/metrics", timeout=10).status_code == 404

    source = tmp_path / "book.md"
    source.write_text(f"# Watched Book\n\n{BOOK}\n")
    submitted = stack.cli("submit", str(source), "--format", "mp3")
    assert submitted.returncode == 0, submitted.stderr + stack.tails()
    # during the job: a backlog the exporter sees
    deadline = time.monotonic() + 60
    while not query(prometheus, "voicebatch:backlog_chunks > 0"):
        assert time.monotonic() < deadline, stack.tails()
        time.sleep(0.5)
    job = submitted.stderr.split("submitted job ", 1)[1].split()[0]
    waited = stack.cli("watch", job, timeout=300)
    assert waited.returncode == 0, waited.stderr + stack.tails()
    # one speech request (POST /v1/audio/speech), so the speech panels have data of their
    # own: the API makes an engine's speech series when it first serves that engine
    with stack.http() as http:
        spoken = http.post(
            "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": "The lamp was lit at dusk."},
        )
    assert spoken.status_code == 200 and spoken.content, spoken.text[:300] + stack.tails()

    queries = panel_queries() + [(f"recording rule {r}", r) for r in recording_rules()]
    deadline = time.monotonic() + 120  # the exporter counts a finished job 10 s late
    while True:
        empty = [(where, expr) for where, expr in queries if not query(prometheus, expr)]
        finished = query(prometheus, "sum(voicebatch_job_turnaround_seconds_count)")
        if (
            not [e for e in empty if not e[1].startswith(GPU_ONLY)]
            and finished
            and float(finished[0]["value"][1]) >= 1
        ):
            break
        assert time.monotonic() < deadline, f"no data: {empty}"
        time.sleep(2)
    # the GPU panels are empty only because no worker has a GPU
    gpus = query(prometheus, "voicebatch_gpus")
    assert gpus and all(float(s["value"][1]) == 0 for s in gpus)
    assert all(expr.startswith(GPU_ONLY) for _, expr in empty), empty

    # and the numbers say what happened
    def value(expr: str) -> float:
        (sample,) = query(prometheus, expr)
        return float(sample["value"][1])

    assert value('sum(voicebatch_jobs{status="done"})') == 1
    assert value("sum(voicebatch_chunk_latency_seconds_count)") >= 3
    assert value("sum(voicebatch_audio_seconds_total)") > 10
    assert value("sum(voicebatch_worker_hourly_price)") == 3.0  # two workers at 1.5
    cost = value("voicebatch:cost_per_audio_hour")
    assert cost > 0 and not math.isinf(cost)
    fill = value("max(voicebatch:batch_fill:ratio_rate5m)")
    assert 0 < fill <= 1
    assert value('sum(voicebatch_dependency_up{dependency=~"database|broker|storage"})') == 3
    assert value("voicebatch_reconciler_lock_held") == 1
    assert value('sum(voicebatch_speech_requests_total{outcome="ok"})') == 1
    assert value("sum(voicebatch_speech_ttfb_seconds_count)") == 1
    # no webhooks in this run: an empty outbox, every attempt series at 0
    assert value("max(voicebatch_webhook_deliveries_pending)") == 0
    assert value("max(voicebatch_webhook_oldest_undelivered_age_seconds)") == 0
    assert value("sum(voicebatch_webhook_attempts_total)") == 0
    # no alert fires on a healthy deployment but the ones about what was not running yet
    firing = {a["labels"]["alertname"] for a in query(prometheus, 'ALERTS{alertstate="firing"}')}
    assert firing <= {"VoicebatchReconcilerNotRunning"}, firing
