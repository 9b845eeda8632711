"""Finished files are written once: conditional puts (single and multipart) on a real S3
API server, and two copies of every assembly step at once leaving one version of each
output in a versioned bucket."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import pipeline.storage.s3 as storage_module
from pipeline.assemble.book import finalize_job
from pipeline.assemble.items import assemble_item
from pipeline.assemble.manifest import MANIFEST_KEY
from pipeline.config import Settings
from pipeline.engines import engine_info
from pipeline.plan.documents import document_from_chapters
from pipeline.plan.submit import submit_job
from pipeline.render.messages import render_chunk_ids
from pipeline.render.renderer import ChunkRenderer
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import JobStatus
from pipeline.storage.factory import open_store
from pipeline.storage.local import LocalObjectStore
from pipeline.storage.s3 import S3ObjectStore
from pipeline.storage.write_once import WriteOnceStore
from workers.context import WorkerResources

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def versions(client: S3Client, bucket: str) -> dict[str, int]:
    """Every key in the bucket and how many versions (and delete markers) it has."""
    counts: dict[str, int] = {}
    listed = client.list_object_versions(Bucket=bucket)
    for entry in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]:
        counts[entry["Key"]] = counts.get(entry["Key"], 0) + 1
    return counts


@pytest.fixture
def versioned(s3_client: S3Client, s3_bucket: str) -> str:
    s3_client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    return s3_bucket


@pytest.mark.parametrize("size", [3000, 11 << 20])  # one PUT; a three-part upload
def test_a_file_is_put_once_and_a_second_writer_leaves_it_alone(
    s3_settings: Settings,
    s3_client: S3Client,
    versioned: str,
    size: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage_module, "SINGLE_PUT_BYTES", 1 << 20)
    monkeypatch.setattr(storage_module, "PART_BYTES", 5 << 20)  # S3's smallest part
    objects = open_store(s3_settings.resolved_storage_url, s3_settings)
    assert isinstance(objects, S3ObjectStore)
    first, second = b"a" * size, b"b" * size
    assert objects.put_file_if_absent(
        "jobs/x/book.mp3", io.BytesIO(first), content_type="audio/mpeg"
    )
    assert not objects.put_file_if_absent(
        "jobs/x/book.mp3", io.BytesIO(second), content_type="audio/mpeg"
    )
    assert objects.get("jobs/x/book.mp3") == first
    assert versions(s3_client, versioned) == {"audio/v1/jobs/x/book.mp3": 1}
    # the losing multipart upload was aborted, not left to cost storage
    assert not s3_client.list_multipart_uploads(Bucket=versioned).get("Uploads")


def test_a_local_file_is_written_once(tmp_path: Path) -> None:
    objects = WriteOnceStore(LocalObjectStore(tmp_path))
    objects.put_file("a/b.wav", io.BytesIO(b"first"), content_type="audio/wav")
    objects.put_file("a/b.wav", io.BytesIO(b"second"), content_type="audio/wav")
    objects.put("a/b.wav", b"third", content_type="audio/wav")
    assert (tmp_path / "a" / "b.wav").read_bytes() == b"first"
    assert objects.kept == ["a/b.wav", "a/b.wav"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.wav"]  # no temp files


def test_two_copies_of_every_assembly_step_at_once_write_each_file_once(
    s3_settings: Settings, s3_client: S3Client, versioned: str, pg_migrated_url: str
) -> None:
    settings = s3_settings.model_copy(update={"database_url": pg_migrated_url})
    runtime = WorkerResources.open(settings)
    submitted = submit_job(
        runtime.factory,
        document_from_chapters(
            "Twice", [("One", "A first line. A second line."), ("Two", "A third line here.")]
        ),
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
        index=None,
    )
    ids = [chunk for group in submitted.chunk_groups for chunk in group]
    outcome = render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=ids)
    assert len(outcome.ready_items) == 2

    kept: list[str] = []  # writes that found their file written by the other copy

    def twice(step: object, **kwargs: object) -> None:
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run() -> None:
            with transaction(runtime.factory) as session:
                uri = store.get_job(session, submitted.job_id).output_uri
            assert uri is not None
            output = runtime.output_store(uri)
            assert isinstance(output, WriteOnceStore)
            barrier.wait()
            try:
                step(runtime.factory, output_store=output, **kwargs)  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)
            kept.extend(output.kept)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors

    for item_id in outcome.ready_items:
        twice(assemble_item, item_id=item_id, chunk_store=runtime.chunk_store)
    with transaction(runtime.factory) as session:
        assert store.claim_finalization(session, job_id=submitted.job_id)
    twice(finalize_job, job_id=submitted.job_id, chunk_store=runtime.chunk_store)

    with transaction(runtime.factory) as session:
        assert store.get_job(session, submitted.job_id).status == JobStatus.DONE
    assert kept, "the copies ran at once: some write found its file already there"
    outputs = {
        key: count for key, count in versions(s3_client, versioned).items() if "/jobs/" in key
    }
    prefix = f"audio/v1/jobs/{submitted.job_id}/"
    audio = ["twice.wav", "chapters/01-one.wav", "chapters/02-two.wav"]
    timings = [f"{a[:-4]}{suffix}" for a in audio for suffix in (".srt", ".vtt", ".timings.json")]
    assert outputs == {prefix + key: 1 for key in [MANIFEST_KEY, *audio, *timings]}
    manifest = json.loads(
        s3_client.get_object(Bucket=versioned, Key=prefix + MANIFEST_KEY)["Body"].read()
    )
    assert [c["file"] for c in manifest["chapters"]] == [
        "chapters/01-one.wav",
        "chapters/02-two.wav",
    ]
