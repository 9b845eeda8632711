"""S3ObjectStore against a real S3 API server (moto), and an embedded render that keeps its
chunk audio there: content-addressed keys under the prefix, written once, reused by later jobs.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from pipeline.config import Settings
from pipeline.errors import InputError, NotFoundError, VoicebatchError
from pipeline.plan.prepare import check_inputs
from pipeline.runner import LocalRuntime, RenderOutcome, render_file
from pipeline.state.db import transaction
from pipeline.state.models import Chunk, ChunkStatus, JobStatus
from pipeline.storage.factory import open_store
from pipeline.storage.keys import chunk_key
from pipeline.storage.s3 import S3ObjectStore
from tests.support.s3 import S3_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WAV = "audio/wav"


@pytest.fixture
def s3_store(s3_settings: Settings) -> S3ObjectStore:
    store = open_store(s3_settings.resolved_storage_url, s3_settings)
    assert isinstance(store, S3ObjectStore)
    return store


def bucket_keys(client: S3Client, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def test_put_if_absent_writes_once_and_never_replaces(s3_store: S3ObjectStore) -> None:
    assert s3_store.put_if_absent("chunks/ab/one.wav", b"first", content_type=WAV)
    assert not s3_store.put_if_absent("chunks/ab/one.wav", b"second", content_type=WAV)
    assert s3_store.get("chunks/ab/one.wav") == b"first"


def test_put_overwrites_and_get_returns_the_bytes(s3_store: S3ObjectStore) -> None:
    s3_store.put("book/manifest.json", b"{}", content_type="application/json")
    s3_store.put("book/manifest.json", b'{"v": 2}', content_type="application/json")
    assert s3_store.get("book/manifest.json") == b'{"v": 2}'


def test_missing_key_is_not_found_and_does_not_exist(s3_store: S3ObjectStore) -> None:
    with pytest.raises(NotFoundError, match=r"missing\.wav"):
        s3_store.get("chunks/00/missing.wav")
    assert not s3_store.exists("chunks/00/missing.wav")
    s3_store.put("chunks/00/missing.wav", b"now here", content_type=WAV)
    assert s3_store.exists("chunks/00/missing.wav")


def test_missing_bucket_is_an_input_error(s3_settings: Settings) -> None:
    store = open_store("s3://no-such-bucket-here/x", s3_settings)
    with pytest.raises(InputError, match="no-such-bucket-here does not exist"):
        store.put_if_absent("a.wav", b"x", content_type=WAV)
    with pytest.raises(InputError, match="does not exist"):
        store.put("a.wav", b"x", content_type=WAV)
    with pytest.raises(InputError, match="does not exist") as raised:
        store.get("a.wav")
    assert not isinstance(raised.value, NotFoundError)  # a setup mistake, not a missing object
    # HEAD answers a bare 404 for a missing bucket too: exists() must not read it as "no key".
    with pytest.raises(InputError, match="does not exist"):
        store.exists("a.wav")


BAD_KEYS = ["../escape.wav", "chunks/../../x.wav", "/abs.wav", "a//b.wav"]


def _every_call(store: S3ObjectStore, key: str) -> list[Callable[[], object]]:
    return [
        lambda: store.put(key, b"x", content_type=WAV),
        lambda: store.put_if_absent(key, b"x", content_type=WAV),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.url(key),
    ]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_escape_the_prefix_never_reach_the_bucket(
    s3_store: S3ObjectStore, s3_client: S3Client, s3_bucket: str, key: str
) -> None:
    for call in _every_call(s3_store, key):
        with pytest.raises(VoicebatchError, match="invalid object key"):
            call()
    with pytest.raises(InputError, match="invalid object key"):
        s3_store.url(key)
    assert bucket_keys(s3_client, s3_bucket) == set()


def test_keys_that_could_escape_the_prefix_are_input_errors(s3_store: S3ObjectStore) -> None:
    for key in BAD_KEYS:
        for call in _every_call(s3_store, key):
            with pytest.raises(InputError, match="invalid object key"):
                call()


def test_presigned_url_is_sigv4_and_serves_the_object(s3_store: S3ObjectStore) -> None:
    s3_store.put("chunks/cd/tone.wav", b"RIFF-bytes", content_type=WAV)
    url = s3_store.url("chunks/cd/tone.wav")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Signature"][0]
    assert query["X-Amz-Expires"] == ["3600"]
    with urllib.request.urlopen(url, timeout=10) as response:  # no credentials: the URL is enough
        assert response.read() == b"RIFF-bytes"


def test_keys_live_under_the_prefix(
    s3_store: S3ObjectStore, s3_client: S3Client, s3_bucket: str
) -> None:
    s3_store.put_if_absent("chunks/ef/x.wav", b"x", content_type=WAV)
    assert bucket_keys(s3_client, s3_bucket) == {f"{S3_PREFIX}/chunks/ef/x.wav"}


# --- an embedded render with chunk audio in S3 --------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def render_settings(request: pytest.FixtureRequest, s3_settings: Settings) -> Settings:
    """The S3 settings, with the job database embedded (SQLite) or on PostgreSQL."""
    if request.param == "sqlite":
        return s3_settings
    url = request.getfixturevalue("pg_migrated_url")
    return s3_settings.model_copy(update={"database_url": url})


@pytest.fixture
def s3_runtime(render_settings: Settings) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime.open(render_settings)
    yield runtime
    bind = runtime.factory.kw["bind"]
    bind.dispose()


def render(runtime: LocalRuntime, source: Path, out: Path) -> RenderOutcome:
    return render_file(runtime, check_inputs(source, runtime.settings), output_dir=out)


def done_chunks(runtime: LocalRuntime, outcome: RenderOutcome) -> list[Chunk]:
    with transaction(runtime.factory) as session:
        chunks = list(session.scalars(select(Chunk).where(Chunk.job_id == outcome.job.job_id)))
    assert chunks and all(chunk.status == ChunkStatus.DONE for chunk in chunks)
    return chunks


def chunk_objects(client: S3Client, bucket: str) -> set[str]:
    return {key for key in bucket_keys(client, bucket) if key.startswith(f"{S3_PREFIX}/chunks/")}


def test_render_stores_each_distinct_chunk_once_and_reuses_it_across_jobs(
    s3_runtime: LocalRuntime, s3_client: S3Client, s3_bucket: str, book: Path, tmp_path: Path
) -> None:
    first = render(s3_runtime, book, tmp_path / "out")
    assert first.assembly is not None and first.assembly.status == JobStatus.DONE
    chunks = done_chunks(s3_runtime, first)
    hashes = {chunk.content_hash for chunk in chunks}
    stored = chunk_objects(s3_client, s3_bucket)
    for chunk in chunks:
        assert chunk.object_key == chunk_key(chunk.content_hash)
        assert f"{S3_PREFIX}/{chunk.object_key}" in stored
    assert len(stored) == len(hashes)
    assert first.stats.rendered == len(chunks) and first.stats.cached == 0

    # A different book: the first chapter again, word for word, then a paragraph of its own.
    sequel = tmp_path / "sequel.md"
    sequel.write_text(
        "# The Sequel\n\n## First Chapter\n\nThe first sentence is here. And a second one "
        "follows it.\n\nA new paragraph starts now. It has two sentences.\n\n"
        "## Later\n\nSomething nobody has rendered before, in a sentence of its own.\n",
        encoding="utf-8",
    )
    second = render(s3_runtime, sequel, tmp_path / "out2")
    assert second.job.job_id != first.job.job_id
    again = done_chunks(s3_runtime, second)
    shared = [chunk for chunk in again if chunk.content_hash in hashes]
    new = {chunk.content_hash for chunk in again} - hashes
    # Shared: the "First Chapter" heading and its two paragraphs; new: "Later" and its text.
    assert len(shared) == 3 and len(new) == 2
    assert second.stats.cached == len(shared) and second.stats.rendered == 2
    assert all(chunk.cache_hit for chunk in shared)
    after = chunk_objects(s3_client, s3_bucket)
    assert after - stored == {f"{S3_PREFIX}/{chunk_key(digest)}" for digest in new}


def test_job_folders_share_the_root_client_and_links_are_signed_for_the_public_name(
    s3_settings: Settings,
) -> None:
    from pipeline.storage.factory import open_store, store_at
    from pipeline.storage.s3 import S3ObjectStore

    settings = s3_settings.model_copy(
        update={"s3_public_endpoint_url": "http://files.example:9000"}
    )
    root = open_store(settings.resolved_storage_url, settings)
    assert isinstance(root, S3ObjectStore)
    job = store_at(
        f"{settings.resolved_storage_url}/jobs/abc",
        root=root,
        root_url=settings.resolved_storage_url,
        settings=settings,
    )
    assert isinstance(job, S3ObjectStore) and job.client is root.client
    job.put("manifest.json", b"{}", content_type="application/json")
    assert root.get("jobs/abc/manifest.json") == b"{}"
    url = job.url("manifest.json")
    assert url.startswith("http://files.example:9000/") and "/jobs/abc/manifest.json" in url
    elsewhere = store_at(
        "s3://other-bucket/x", root=root, root_url=settings.resolved_storage_url, settings=settings
    )
    assert isinstance(elsewhere, S3ObjectStore) and elsewhere.bucket == "other-bucket"
