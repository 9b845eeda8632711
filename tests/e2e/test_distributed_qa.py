"""QA while rendering in distributed mode: the API and real Celery workers (render and
assemble queues) on PostgreSQL, a private Redis and an S3 server, with the real Piper
voice and a real Whisper model. The render worker checks each chunk beside its engine,
re-takes a flagged one, and the job is done with the chunk still flagged listed in its
status, its manifest and the worker's metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.asr import asr_model_dir
from tests.support.metrics import metric_samples, metric_value
from tests.support.stack import Deployments, Stack

pytestmark = pytest.mark.e2e

BOOK = """# Checked

The fox looked up at the ripe grapes hanging from the vine.

Маленький дом стоит у моря.

The hare ran quickly along the dusty road toward the old mill.
"""


@pytest.fixture(scope="module")
def stack(deployments: Deployments, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with deployments.stack(
        tmp_path_factory.mktemp("stack-qa"),
        bucket_prefix="e2e-qa",
        broker_db=13,
        redis_db=14,
        settings={
            "VOICEBATCH_ENGINE": "piper",
            "VOICEBATCH_ASR_MODEL_DIR": str(asr_model_dir()),
            "VOICEBATCH_QA_RETRIES": "1",
        },
    ) as running:
        yield running


def test_a_job_submitted_with_qa_lists_its_flagged_chunk_with_times(
    stack: Stack, tmp_path: Path
) -> None:
    source = tmp_path / "checked.md"
    source.write_text(BOOK)
    submitted = stack.cli("submit", str(source), "--qa", "--wait", "--format", "wav")
    assert submitted.returncode == 0, submitted.stderr + stack.tails()
    found = re.search(r"submitted job ([0-9a-f-]{36})", submitted.stderr)
    assert found, submitted.stderr
    job = found.group(1)
    assert "status: done" in submitted.stdout

    # The finalizer writes QA's results before it marks the job done: a done job's
    # status already holds them, with their times.
    info = json.loads(stack.cli("status", job, "--json").stdout)
    assert info["status"] == "done" and "checked_at" in info["qa"], info
    qa = info["qa"]
    assert qa["chunks"] == info["chunks"]["total"] and qa["retaken"] >= 1, qa
    [flagged] = qa["flagged_chunks"]
    assert flagged["text"].startswith("Маленький") and flagged["takes"] == 2  # 1 + QA_RETRIES
    assert flagged["file"].startswith("chapters/") and flagged["end"] > flagged["start"]
    assert flagged["book_start"] >= flagged["start"]
    with stack.http() as http:
        api_qa = http.get(f"/v1/jobs/{job}").json()["qa"]
    assert api_qa["checked_at"] and api_qa["flagged"] == 1
    assert api_qa["flagged_chunks"][0]["book_start"] == flagged["book_start"]
    shown = stack.cli("status", job)
    assert "Маленький дом" in shown.stdout and "2 takes" in shown.stdout, shown.stdout

    out = tmp_path / "out"
    downloaded = stack.cli("download", job, "-o", str(out))
    assert downloaded.returncode == 0, downloaded.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["qa"]["live"] is True
    assert [c["text"] for c in manifest["qa"]["flagged_chunks"]] == [flagged["text"]]
    chapter = manifest["chapters"][0]
    timings = json.loads((out / chapter["timings"]["json"]).read_text())
    assert timings["chunks"][0]["words"], "the word times reach the timing files"
    assert (out / "qa.json").is_file()

    metrics = stack.scrape("worker-render")
    flags = metric_samples(metrics, "voicebatch_qa_flags_total")
    assert any(
        set(labels) == {"flag"} and re.fullmatch("[a-z_]+", labels["flag"]) and value >= 1
        for labels, value in flags
    ), metrics
    count = metric_value(metrics, "voicebatch_qa_error_rate_count")
    assert count >= qa["chunks"] + qa["retaken"]
    assert metric_value(metrics, "voicebatch_qa_takes_total", outcome="flagged") >= 1
