"""Distributed mode end to end: the API and two real Celery workers in their own processes,
on the machine's PostgreSQL and Redis or RabbitMQ and an S3 server, driven by the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyloudnorm
import pytest

from pipeline.audio.encode import decode
from tests.support.postgres import PostgresAdmin, pg_url
from tests.support.s3 import s3_client_for
from tests.support.services import free_port, need_service, private_redis_url
from tests.support.stack import Stack, rabbit_vhost, running_stack, service_env

pytestmark = pytest.mark.e2e

BOOK = """# Two Short Chapters

## The Lighthouse

The keeper climbed the stairs at dusk. He lit the lamp and watched the ships.

The sea was calm that night, and the light turned slowly over the water.

## The Harbour

In the morning the boats came home. Gulls followed them, crying over the nets.
"""


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def stack(
    request: pytest.FixtureRequest,
    pg_admin: PostgresAdmin,
    pg_template: str,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    import redis

    cleanup: list[list[str]] = []
    if request.param == "redis":
        broker = private_redis_url(11)
        redis.Redis.from_url(broker).flushdb()
    else:
        need_service("RabbitMQ", "127.0.0.1", 5672)
        vhost, cleanup = rabbit_vhost()
        broker = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    redis.Redis.from_url(private_redis_url(10)).flushdb()
    database = pg_admin.create(template=pg_template)
    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    s3_client_for(s3_endpoint).create_bucket(Bucket=bucket)
    root = tmp_path_factory.mktemp(f"stack-{request.param}")
    env = service_env(
        database_url=pg_url(database),
        broker=broker,
        redis_url=private_redis_url(10),
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        root=root,
    ) | {
        "VOICEBATCH_ENGINE": "piper",
        "VOICEBATCH_FLOWER_PASSWORD": "flower-secret",
        "VOICEBATCH_S3_BUCKET_FOR_TESTS": bucket,  # not a setting: read back by the tests
    }
    try:
        with running_stack(env=env, logs=root, api_port=free_port()) as running:
            running.env["BROKER_KIND"] = request.param
            yield running
    finally:
        pg_admin.drop(database)
        for command in cleanup:
            subprocess.run(command, capture_output=True, timeout=60)


def _objects(stack: Stack, prefix: str) -> list[str]:
    client = s3_client_for(stack.env["VOICEBATCH_S3_ENDPOINT_URL"])
    bucket = stack.env["VOICEBATCH_S3_BUCKET_FOR_TESTS"]
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [entry["Key"] for entry in page.get("Contents", [])]
    return keys


def test_a_book_submitted_with_the_cli_is_rendered_by_workers_and_downloaded(
    stack: Stack, tmp_path: Path
) -> None:
    source = tmp_path / "harbour.md"
    source.write_text(BOOK)
    submitted = stack.cli("submit", str(source), "--wait", "--format", "mp3")
    assert submitted.returncode == 0, submitted.stderr + stack.tails()
    job_id = re.search(r"submitted job ([0-9a-f-]{36})", submitted.stderr)
    assert job_id, submitted.stderr
    job = job_id.group(1)
    assert "status: done" in submitted.stdout

    status = stack.cli("status", job, "--json")
    info = json.loads(status.stdout)
    assert info["status"] == "done" and info["items"] == {"total": 2, "done": 2, "failed": 0}
    assert info["chunks"]["done"] == info["chunks"]["total"] > 0

    out = tmp_path / "out"
    downloaded = stack.cli("download", job, "-o", str(out))
    assert downloaded.returncode == 0, downloaded.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["job_id"] == job
    assert [c["title"] for c in manifest["chapters"]] == ["The Lighthouse", "The Harbour"]
    book = decode(out / manifest["file"])
    assert abs(book.duration - manifest["duration"]) < 0.1  # mp3 priming aside, the whole book
    assert manifest["duration"] > 8  # three paragraphs and two headings, spoken
    loudness = pyloudnorm.Meter(book.sample_rate).integrated_loudness(book.audio.astype(np.float64))
    assert abs(loudness + 18.0) <= 1.0
    for chapter in manifest["chapters"]:
        audio = decode(out / chapter["file"])
        assert abs(audio.duration - chapter["duration"]) < 0.1
        # speech, not silence: a fifth of 50 ms windows are clearly voiced
        frames = audio.audio[: len(audio.audio) // 1200 * 1200].reshape(-1, 1200)
        assert np.mean(np.sqrt((frames**2).mean(axis=1)) > 0.02) > 0.2
    # both workers export what they did to Prometheus (the assembler from its pool children)
    render_metrics = httpx.get(stack.metrics["worker-render"], timeout=10).text
    assert re.search(r'voicebatch_chunks_total\{outcome="rendered"\} [1-9]', render_metrics)
    assemble_metrics = httpx.get(stack.metrics["worker-assemble"], timeout=10).text
    assert re.search(r'voicebatch_items_total\{outcome="done"\} [1-9]', assemble_metrics)
    # the outputs live in the bucket under the job's folder, chunks under chunks/
    assert f"prod/jobs/{job}/manifest.json" in _objects(stack, f"prod/jobs/{job}/")
    assert (
        len(_objects(stack, "prod/chunks/")) >= info["chunks"]["total"] - info["chunks"]["cached"]
    )


def test_a_catalogue_with_repeated_texts_renders_each_text_once(stack: Stack) -> None:
    unique = [
        f"Model {n} in {colour}."
        for n, colour in zip(range(150), ["red", "blue", "green"] * 50, strict=True)
    ]
    items = [{"id": f"sku-{i:03d}", "text": text} for i, text in enumerate(unique)]
    items += [{"id": f"sku-{150 + i:03d}", "text": unique[i]} for i in range(50)]
    before = len(_objects(stack, "prod/chunks/"))
    with stack.http() as http:
        created = http.post(
            "/v1/jobs", json={"title": "Catalogue", "items": items, "format": "wav"}
        )
        assert created.status_code == 201, created.text
        job = created.json()["id"]
        deadline = time.monotonic() + 300
        while (info := http.get(f"/v1/jobs/{job}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, stack.tails()
            time.sleep(0.5)
        assert info["status"] == "done", info
        assert info["chunks"]["total"] == 200 and info["chunks"]["cached"] == 50
        assert info["items"] == {"total": 200, "done": 200, "failed": 0}
        files = http.get(f"/v1/jobs/{job}/outputs").json()["files"]
    # 150 distinct texts: 150 new chunk objects, whatever the repeats and the interleaving
    assert len(_objects(stack, "prod/chunks/")) - before == 150
    names = sorted(f["name"] for f in files if f["kind"] == "item")
    assert names == sorted(f"items/sku-{i:03d}.wav" for i in range(200))
    twin, original = (
        decode(httpx.get(next(f["url"] for f in files if f["name"] == name)).content).audio
        for name in ("items/sku-150.wav", "items/sku-000.wav")
    )
    # the same text and voice: the same finished samples (the files differ only in tags)
    assert np.array_equal(twin, original) and twin.size > 0


def test_flower_shows_the_live_workers_behind_basic_auth(stack: Stack) -> None:
    port = free_port()
    stack.start("flower", "flower", "--port", str(port))
    url = f"http://127.0.0.1:{port}/api/workers"
    deadline = time.monotonic() + 60
    workers: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(
                url, params={"refresh": "1"}, auth=("admin", "flower-secret"), timeout=10
            )
            if response.status_code == 200 and len(workers := response.json()) >= 2:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    assert any(name.startswith("render-") for name in workers), stack.log("flower")[-2000:]
    assert any(name.startswith("assemble-") for name in workers)
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=("admin", "wrong"), timeout=10).status_code == 401
    stack.processes.pop("flower").terminate()


def test_a_cancelled_job_stops_and_the_cli_reports_it(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "long.md"
    paragraphs = "\n\n".join(
        f"Paragraph {n} tells of the lighthouse keeper again." for n in range(80)
    )
    source.write_text(f"# Long\n\n## Only\n\n{paragraphs}\n")
    submitted = stack.cli("submit", str(source))
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    cancelled = stack.cli("cancel", job)
    assert cancelled.returncode == 0 and f"job {job} cancelled" in cancelled.stdout
    assert "already cancelled" in stack.cli("cancel", job).stderr
    watched = stack.cli("watch", job)
    assert watched.returncode == 1 and "status: cancelled" in watched.stdout
    listed = stack.cli("jobs", "--json")
    assert {"id": job, "status": "cancelled"}.items() <= next(
        j for j in json.loads(listed.stdout) if j["id"] == job
    ).items()
    time.sleep(2)  # messages still queued for it are acknowledged and do nothing
    info = json.loads(stack.cli("status", job, "--json").stdout)
    assert info["status"] == "cancelled" and info["chunks"]["leased"] == 0
    assert info["chunks"]["done"] < info["chunks"]["total"]
    download = stack.cli("download", job, "-o", str(tmp_path / "o"))
    assert download.returncode == 1 and "is cancelled; it has no files" in download.stderr
    assert not (tmp_path / "o").exists()  # refused before any folder was made
