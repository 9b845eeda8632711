"""Outputs in S3: lifecycle rules applied to and read back from a real S3 API server
(moto), an M4B book with its cover made by the worker path, and archived files that need
a restore before the API or `voicebatch download` hand them out."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
import uvicorn
from typer.testing import CliRunner

from api.app import create_app
from cli.app import app as cli
from pipeline.assemble.book import finalize_job
from pipeline.assemble.items import assemble_item
from pipeline.audio.probe import probe
from pipeline.config import Settings
from pipeline.render.messages import render_chunk_ids
from pipeline.render.renderer import ChunkRenderer
from pipeline.state import store
from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.keys import create_key
from pipeline.state.models import JobStatus
from pipeline.storage.archive import parse_restore
from pipeline.storage.lifecycle import apply_rules, read_rules
from tests.support import epubs
from tests.support.images import image_bytes
from tests.support.services import free_port, private_redis_url
from workers.app import create_celery
from workers.context import WorkerResources
from workers.dispatch import CeleryDispatcher

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "VOICEBATCH_STORAGE_URL": settings.resolved_storage_url,
        "VOICEBATCH_S3_ENDPOINT_URL": str(settings.s3_endpoint_url),
        "VOICEBATCH_S3_REGION": settings.s3_region,
        "VOICEBATCH_S3_ACCESS_KEY_ID": str(settings.s3_access_key_id),
        "VOICEBATCH_S3_SECRET_ACCESS_KEY": "testing",
    }


def test_lifecycle_rules_are_merged_into_the_bucket_and_read_back(
    s3_settings: Settings, s3_client: S3Client, s3_bucket: str
) -> None:
    theirs = {
        "ID": "logs-cleanup",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 3},
    }
    s3_client.put_bucket_lifecycle_configuration(
        Bucket=s3_bucket,
        LifecycleConfiguration={"Rules": [theirs]},  # type: ignore[typeddict-item]
    )
    settings = s3_settings.model_copy(
        update={
            "chunk_expire_days": 45,
            "archive_after_days": 60,
            "archive_storage_class": "GLACIER",
        }
    )
    apply_rules(settings)
    apply_rules(settings)  # twice: still one of each
    rules = {
        r["ID"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]
    }
    assert set(rules) == {
        "logs-cleanup",
        "voicebatch-chunks-expire",
        "voicebatch-outputs-archive",
        "voicebatch-abort-multipart",
    }
    assert rules["logs-cleanup"]["Expiration"]["Days"] == 3  # someone else's: untouched
    chunks = rules["voicebatch-chunks-expire"]
    assert chunks["Filter"]["Prefix"] == "audio/v1/chunks/" and chunks["Expiration"]["Days"] == 45
    archive = rules["voicebatch-outputs-archive"]
    assert archive["Filter"]["And"]["Prefix"] == "audio/v1/jobs/"
    assert archive["Filter"]["And"]["Tags"] == [{"Key": "voicebatch-archive", "Value": "audio"}]
    assert archive["Transitions"][0] == {"Days": 60, "StorageClass": "GLACIER"}
    multipart = rules["voicebatch-abort-multipart"]
    assert multipart["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 2
    # Archiving turned off: our rule goes, the others stay.
    apply_rules(settings.model_copy(update={"archive_after_days": 0}))
    ids = {r["ID"] for r in s3_client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]}
    assert ids == {"logs-cleanup", "voicebatch-chunks-expire", "voicebatch-abort-multipart"}


def test_lifecycle_commands(
    s3_settings: Settings, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env_for(s3_settings).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    empty = runner.invoke(cli, ["storage", "lifecycle", "show"])
    assert empty.exit_code == 0 and "no lifecycle rules" in empty.output
    applied = runner.invoke(cli, ["storage", "lifecycle", "apply"])
    assert applied.exit_code == 0, applied.output
    assert "voicebatch-chunks-expire [Enabled]: audio/v1/chunks/: delete after 30 days" in (
        applied.output
    )
    assert "move to GLACIER_IR after 30 days" in applied.output
    shown = runner.invoke(cli, ["storage", "lifecycle", "show", "--json"])
    assert shown.exit_code == 0 and '"voicebatch-outputs-archive"' in shown.output
    assert (
        len(
            read_rules(
                __import__("pipeline.storage.lifecycle").storage.lifecycle.s3_store(s3_settings)
            )
        )
        == 3
    )
    monkeypatch.setenv("VOICEBATCH_STORAGE_URL", "/tmp/some-folder")
    local = runner.invoke(cli, ["storage", "lifecycle", "apply"])
    assert local.exit_code == 2 and "lifecycle rules are an S3 feature" in local.output


def test_restore_states_are_read_from_the_restore_header() -> None:
    assert parse_restore("STANDARD", None).state == "ready"
    assert parse_restore("GLACIER_IR", None).state == "ready"  # instant retrieval
    assert parse_restore("GLACIER", None).state == "archived"
    assert parse_restore("DEEP_ARCHIVE", 'ongoing-request="true"').state == "restoring"
    done = parse_restore(
        "GLACIER", 'ongoing-request="false", expiry-date="Fri, 21 Dec 2029 00:00:00 GMT"'
    )
    assert done.state == "ready" and done.restored_until == "Fri, 21 Dec 2029 00:00:00 GMT"


@pytest.fixture
def served(s3_settings: Settings, pg_migrated_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The real API on a free port (uvicorn in a thread), a key, and the worker runtime."""
    broker_url = private_redis_url()
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    settings = s3_settings.model_copy(
        update={"database_url": pg_migrated_url, "broker_url": broker_url}
    )
    engine = create_db_engine(pg_migrated_url)
    with transaction(session_factory(engine)) as session:
        key = create_key(session, name="alice")[1]
    celery = create_celery(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, CeleryDispatcher(celery)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield {
        "url": f"http://127.0.0.1:{port}",
        "key": key,
        "settings": settings,
        "runtime": WorkerResources.open(settings),
    }
    server.should_exit = True
    thread.join(10)
    celery.close()
    engine.dispose()
    broker.flushdb()
    broker.close()


def _run_workers(runtime: WorkerResources, job_id: uuid.UUID) -> None:
    """What the render and assemble workers do for a job, called in order."""
    renderer = ChunkRenderer(
        factory=runtime.factory,
        store_=runtime.chunk_store,
        engine=runtime.engine,
        settings=runtime.settings,
        index=None,
    )
    with transaction(runtime.factory) as session:
        ids = [
            c.id
            for item in store.job_items(session, job_id=job_id)
            for c in store.item_chunks(session, item_id=item.id)
        ]
        uri = store.get_job(session, job_id).output_uri
    assert uri is not None
    outcome = render_chunk_ids(renderer, job_id=job_id, chunk_ids=ids)
    output = runtime.output_store(uri)
    for item_id in outcome.ready_items:
        assemble_item(
            runtime.factory, item_id=item_id, chunk_store=runtime.chunk_store, output_store=output
        )
    with transaction(runtime.factory) as session:
        assert store.claim_finalization(session, job_id=job_id)
    result = finalize_job(
        runtime.factory, job_id=job_id, chunk_store=runtime.chunk_store, output_store=output
    )
    assert result.status == JobStatus.DONE


def test_an_m4b_with_cover_made_by_workers_and_archived_files_that_need_a_restore(
    served: dict[str, Any], s3_client: S3Client, s3_bucket: str, tmp_path: Path
) -> None:
    picture = image_bytes("png", 90, 90)
    headers = {"Authorization": f"Bearer {served['key']}"}
    body = {
        "title": "Shelved",
        "chapters": [
            {"title": "One", "text": "The first chapter has words. It has two sentences."},
            {"title": "Two", "text": "The second chapter is short."},
        ],
        "format": "m4b",
        "master": "flac",
        "loudness_preset": "podcast",
        "cover": base64.b64encode(picture).decode(),
    }
    bad = httpx.post(
        f"{served['url']}/v1/jobs",
        json={**body, "cover": base64.b64encode(b"GIF89a").decode()},
        headers=headers,
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cover"
    response = httpx.post(f"{served['url']}/v1/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    job_id = uuid.UUID(response.json()["id"])
    prefix = f"audio/v1/jobs/{job_id}/"
    stored = s3_client.get_object(Bucket=s3_bucket, Key=prefix + "cover.png")["Body"].read()
    assert stored == picture  # in the job's folder before any worker runs
    _run_workers(served["runtime"], job_id)

    listing = httpx.get(f"{served['url']}/v1/jobs/{job_id}/outputs", headers=headers).json()
    assert listing["ready"] is True
    kinds = {f["name"]: f["kind"] for f in listing["files"]}
    assert kinds["shelved.m4b"] == "book" and kinds["cover.png"] == "cover"
    assert kinds["master/shelved.flac"] == "master" and kinds["shelved.srt"] == "timing"
    assert kinds["chapters/01-one.m4b"] == "chapter"
    book = tmp_path / "book.m4b"
    book.write_bytes(
        httpx.get(next(f["url"] for f in listing["files"] if f["name"] == "shelved.m4b")).content
    )
    info = probe(book)
    assert [c.title for c in info.chapters] == ["One", "Two"] and info.cover == picture
    tagging = s3_client.get_object_tagging(Bucket=s3_bucket, Key=prefix + "shelved.m4b")
    assert tagging["TagSet"] == [{"Key": "voicebatch-archive", "Value": "audio"}]
    assert (
        s3_client.get_object_tagging(Bucket=s3_bucket, Key=prefix + "manifest.json")["TagSet"] == []
    )

    # The lifecycle rule moved the audio to GLACIER (done here by hand: moto keeps no clock).
    for name in ("shelved.m4b", "chapters/01-one.m4b"):
        s3_client.copy_object(
            Bucket=s3_bucket,
            Key=prefix + name,
            CopySource={"Bucket": s3_bucket, "Key": prefix + name},
            StorageClass="GLACIER",
            MetadataDirective="COPY",
        )
    s3_client.copy_object(
        Bucket=s3_bucket,
        Key=prefix + "chapters/02-two.m4b",
        CopySource={"Bucket": s3_bucket, "Key": prefix + "chapters/02-two.m4b"},
        StorageClass="GLACIER_IR",
        MetadataDirective="COPY",
    )
    listing = httpx.get(f"{served['url']}/v1/jobs/{job_id}/outputs", headers=headers).json()
    states = {f["name"]: (f["state"], f["url"] is not None) for f in listing["files"]}
    assert listing["ready"] is False and "restore" in listing["message"]
    assert states["shelved.m4b"] == ("archived", False)
    assert states["chapters/02-two.m4b"] == ("ready", True)  # GLACIER_IR reads at once
    assert states["manifest.json"] == ("ready", True)

    env = {"VOICEBATCH_API_URL": served["url"], "VOICEBATCH_API_KEY": served["key"]}
    runner = CliRunner()
    refused = runner.invoke(cli, ["download", str(job_id), "-o", str(tmp_path / "dl")], env=env)
    assert refused.exit_code == 5, refused.output
    assert (
        "archived in GLACIER" in refused.output and f"voicebatch restore {job_id}" in refused.output
    )
    assert not (tmp_path / "dl" / "shelved.m4b").exists()  # nothing half downloaded

    restored = runner.invoke(
        cli, ["restore", str(job_id), "--days", "3", "--tier", "Bulk"], env=env
    )
    assert restored.exit_code == 0, restored.output
    head = s3_client.head_object(Bucket=s3_bucket, Key=prefix + "shelved.m4b")
    assert "Restore" in head  # the request reached S3
    got = runner.invoke(cli, ["download", str(job_id), "-o", str(tmp_path / "dl")], env=env)
    assert got.exit_code == 0, got.output
    assert probe(tmp_path / "dl" / "shelved.m4b").cover == picture
    wrong = runner.invoke(cli, ["restore", str(job_id), "--tier", "Fast"], env=env)
    assert wrong.exit_code == 2 and "unknown tier" in wrong.output


def test_submit_uploads_the_cover_and_the_output_options(
    served: dict[str, Any], s3_client: S3Client, s3_bucket: str, tmp_path: Path
) -> None:
    book = tmp_path / "tale.md"
    book.write_text("# Tale\n\n## Start\n\nOnce upon a time.\n\n## End\n\nThe end.\n")
    cover = tmp_path / "front.jpg"
    cover.write_bytes(image_bytes("jpeg", 80, 80))
    env = {"VOICEBATCH_API_URL": served["url"], "VOICEBATCH_API_KEY": served["key"]}
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "submit",
            str(book),
            "--format",
            "m4b",
            "--cover",
            str(cover),
            "--no-chapter-files",
            "--master",
            "flac",
            "--subtitles",
            "vtt,json",
            "--loudness-preset",
            "acx",
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    job_id = uuid.UUID(result.output[result.output.index("{") :].split('"id": "')[1][:36])
    runtime: WorkerResources = served["runtime"]
    with transaction(runtime.factory) as session:
        job = store.get_job(session, job_id)
        options = dict(job.options)
        assert job.output_format == "m4b"
    assert options["chapter_files"] is False and options["master_format"] == "flac"
    assert options["timings"] == ["vtt", "json"] and options["loudness_preset"] == "acx"
    assert options["cover"]["mime_type"] == "image/jpeg" and options["head_silence_ms"] == 750
    key = f"audio/v1/jobs/{job_id}/cover.jpg"
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == cover.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    refused = runner.invoke(cli, ["submit", str(book), "--cover", str(bad)], env=env)
    assert refused.exit_code == 2 and "cannot be decoded" in refused.output
    clash = runner.invoke(cli, ["submit", str(book), "--loudness-preset", "fast"], env=env)
    assert clash.exit_code == 2 and "loudness_preset" in clash.output


def test_submit_an_epub_from_the_cli(
    served: dict[str, Any], s3_client: S3Client, s3_bucket: str, tmp_path: Path
) -> None:
    book = tmp_path / "moby.epub"
    book.write_bytes(epubs.epub3_book())
    env = {"VOICEBATCH_API_URL": served["url"], "VOICEBATCH_API_KEY": served["key"]}
    runner = CliRunner()
    result = runner.invoke(cli, ["submit", str(book), "--keep-front-matter", "--json"], env=env)
    assert result.exit_code == 0, result.output
    job_id = uuid.UUID(result.output[result.output.index("{") :].split('"id": "')[1][:36])
    runtime: WorkerResources = served["runtime"]
    with transaction(runtime.factory) as session:
        job = store.get_job(session, job_id)
        assert (job.title, job.author) == ("Moby-Dick", "Herman Melville")
        assert job.source_sha256 == hashlib.sha256(book.read_bytes()).hexdigest()
        titles = [item.title for item in sorted(job.items, key=lambda item: item.position)]
    assert titles[:3] == ["Moby-Dick", "Copyright", "Contents"] and len(titles) == 9
    key = f"audio/v1/jobs/{job_id}/cover.png"  # the book's own cover, for the tags
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == epubs.COVER_PNG

    evil = tmp_path / "evil.epub"
    evil.write_bytes(epubs.billion_laughs())
    refused = runner.invoke(cli, ["submit", str(evil)], env=env)
    assert refused.exit_code == 2, refused.output
    assert "evil.epub: OEBPS/c1.xhtml declares XML entities" in refused.output.replace("\n", "")


def test_the_cache_index_never_outlives_chunks_the_lifecycle_rule_expires(
    s3_settings: Settings, pg_migrated_url: str
) -> None:
    """Only freshly written chunks go into the Redis index (its entries live 7 days,
    chunks at least 8); a chunk found through the database, which may be old, does not."""
    from pipeline.engines import engine_info
    from pipeline.plan.documents import document_from_text
    from pipeline.plan.submit import submit_job
    from pipeline.render.chunk_index import RedisChunkIndex

    client = redis.Redis.from_url(private_redis_url())
    client.flushdb()
    settings = s3_settings.model_copy(update={"database_url": pg_migrated_url})
    runtime = WorkerResources.open(settings)
    index = RedisChunkIndex(client)

    def render(text: str) -> None:
        submitted = submit_job(
            runtime.factory,
            document_from_text("T", text),
            engine=engine_info(settings),
            settings=settings,
            kind="book",
            owner_id=uuid.uuid4(),
            idempotency_key=None,
            output_base=settings.resolved_storage_url,
        )
        renderer = ChunkRenderer(
            factory=runtime.factory,
            store_=runtime.chunk_store,
            engine=runtime.engine,
            settings=settings,
            index=index,
        )
        ids = [c for g in submitted.chunk_groups for c in g]
        render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=ids)

    try:
        render("A sentence rendered once.")
        keys = client.keys("vb:chunk:*")
        assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 7 * 24 * 3600  # fresh: indexed
        client.flushdb()  # the entry expired
        render("A sentence rendered once.")  # a cache hit through the database
        assert client.keys("vb:chunk:*") == []
    finally:
        client.flushdb()
        client.close()


def test_a_catalogue_submitted_as_jsonl_ends_with_a_summary_object_in_s3(
    served: dict[str, Any], s3_client: S3Client, s3_bucket: str, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {served['key']}"}
    refused = httpx.post(
        f"{served['url']}/v1/jobs",
        json={
            "items": [
                {"id": "a", "text": "Fine.", "voice": "tone"},
                {"id": "b", "text": "Fine.", "voice": "../voices/evil.onnx"},
            ]
        },
        headers=headers,
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "items[1].voice"
    unsafe = httpx.post(
        f"{served['url']}/v1/jobs",
        json={"items": [{"id": "ok", "text": "Fine."}, {"id": "../up", "text": "Out."}]},
        headers=headers,
    )
    assert unsafe.status_code == 422 and unsafe.json()["error"]["field"] == "items[1].id"

    source = tmp_path / "shop.jsonl"
    rows = [
        {"sku": "Red Mug", "text": "A red mug, for tea.", "voice": "tone"},
        {"sku": "Blue Plate", "text": "A blue plate. It is round."},
        {"sku": "Green Cup", "text": "A small green cup.", "voice": ""},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    env = {"VOICEBATCH_API_URL": served["url"], "VOICEBATCH_API_KEY": served["key"]}
    runner = CliRunner()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sku": "a", "text": "Fine."}\n{"sku": "a", "text": "Again."}\n')
    dup = runner.invoke(cli, ["submit", str(bad), "--id-column", "sku"], env=env)
    assert dup.exit_code == 2 and "line 2" in dup.output and "repeats" in dup.output
    result = runner.invoke(
        cli,
        [
            "submit",
            str(source),
            "--id-column",
            "sku",
            "--name-template",
            "{index:02d}-{slug}.{ext}",
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    assert job["kind"] == "catalogue"
    job_id = uuid.UUID(job["id"])
    _run_workers(served["runtime"], job_id)

    prefix = f"audio/v1/jobs/{job_id}/"
    body = s3_client.get_object(Bucket=s3_bucket, Key=prefix + "items/summary.csv")["Body"]
    table = list(csv.DictReader(io.StringIO(body.read().decode(), newline="")))
    names = ["items/01-red-mug.wav", "items/02-blue-plate.wav", "items/03-green-cup.wav"]
    assert [(r["id"], r["file"], r["status"]) for r in table] == [
        ("Red Mug", names[0], "done"),
        ("Blue Plate", names[1], "done"),
        ("Green Cup", names[2], "done"),
    ]
    for row in table:
        head = s3_client.head_object(Bucket=s3_bucket, Key=prefix + row["file"])
        wav_seconds = (head["ContentLength"] - 44) / (2 * 22050)  # 16-bit mono PCM
        assert abs(wav_seconds - float(row["duration_seconds"])) < 0.01
    listing = httpx.get(f"{served['url']}/v1/jobs/{job_id}/outputs", headers=headers).json()
    kinds = {f["name"]: f["kind"] for f in listing["files"]}
    assert kinds["items/summary.csv"] == "summary"
    assert all(kinds[name] == "item" for name in names)
    got = runner.invoke(cli, ["download", str(job_id), "-o", str(tmp_path / "dl")], env=env)
    assert got.exit_code == 0, got.output
    assert (tmp_path / "dl" / "items" / "summary.csv").read_bytes() == s3_client.get_object(
        Bucket=s3_bucket, Key=prefix + "items/summary.csv"
    )["Body"].read()


def test_a_job_recorded_with_a_timing_kind_twice_still_finishes(
    served: dict[str, Any], s3_client: S3Client, s3_bucket: str
) -> None:
    """Issue 21.4: duplicate subtitle kinds are refused at submit, and a job that has them
    recorded anyway (an older server accepted them) is finalised, one file per kind."""
    headers = {"Authorization": f"Bearer {served['key']}"}
    refused = httpx.post(
        f"{served['url']}/v1/jobs",
        json={"text": "Hello again.", "subtitles": ["vtt", "vtt"]},
        headers=headers,
    )
    assert refused.status_code == 422 and "subtitles" in refused.text, refused.text
    created = httpx.post(
        f"{served['url']}/v1/jobs",
        json={"text": "Hello again.", "subtitles": ["vtt"]},
        headers=headers,
    )
    assert created.status_code in (200, 201, 202), created.text
    job_id = uuid.UUID(created.json()["id"])
    runtime = served["runtime"]
    with transaction(runtime.factory) as session:
        job = store.get_job(session, job_id)
        job.options = {**job.options, "timings": ["vtt", "vtt"]}
    _run_workers(runtime, job_id)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    vtts = sorted(o["Key"] for o in listed if o["Key"].endswith(".vtt"))
    # one WebVTT file beside each audio file: the chapter's and the book's
    assert [key.rsplit("/", 2)[-2:] for key in vtts] == [
        ["chapters", "01-untitled.vtt"],
        [str(job_id), "untitled.vtt"],
    ], vtts


def test_a_one_word_job_finishes_on_postgresql(
    served: dict[str, Any], s3_client: S3Client, s3_bucket: str
) -> None:
    """Issue 21.3: "Go!" is shorter than one 400 ms loudness block. Its loudness was
    -Infinity, which PostgreSQL's json refuses, so its assembly was retried for ever."""
    created = httpx.post(
        f"{served['url']}/v1/jobs",
        json={"text": "Go!"},
        headers={"Authorization": f"Bearer {served['key']}"},
    )
    assert created.status_code == 201, created.text
    job_id = uuid.UUID(created.json()["id"])
    runtime = served["runtime"]
    _run_workers(runtime, job_id)  # asserts the job is done
    with transaction(runtime.factory) as session:
        (item,) = store.job_items(session, job_id=job_id)
        assert item.mastering is not None
        assert all(
            value == value and abs(value) != float("inf")
            for value in item.mastering.values()
            if isinstance(value, float)
        )
