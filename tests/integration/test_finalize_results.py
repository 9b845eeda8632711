"""A job is final only with every file it asked for (issue 18): on PostgreSQL, with the
worker's real task bodies and a local output folder, a finalizer whose QA results (or
read-along EPUB) cannot be written leaves the job `assembling`, with no webhook queued;
the next finalization writes them, the same again, and only then marks the job done and
queues `job.done`."""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.assemble.keys import SOURCE_KEY
from pipeline.config import Settings, load_settings
from pipeline.plan.documents import document_from_chapters
from pipeline.state import store, verdicts
from pipeline.state.db import transaction
from pipeline.state.models import Job, JobStatus
from pipeline.state.webhooks import job_deliveries
from pipeline.storage.local import LocalObjectStore
from pipeline.storage.write_once import WriteOnceStore
from tests.support.asr import asr_model_dir
from tests.support.epubcheck import assert_epubcheck_passes
from tests.support.services import private_redis_url
from tests.support.workers import render_ids, submit
from workers import tasks
from workers.app import VoicebatchCelery, create_celery

pytestmark = pytest.mark.integration

HOOK = "https://hooks.example.com/voicebatch"


@pytest.fixture
def app(pg_migrated_url: str, tmp_path: Path) -> Iterator[VoicebatchCelery]:
    import redis

    broker = private_redis_url(8)
    redis.Redis.from_url(broker).flushdb()
    settings = load_settings(
        engine="test-tone",
        data_dir=tmp_path / "data",
        storage_url=str(tmp_path / "objects"),
        database_url=pg_migrated_url,
        broker_url=broker,
        output_format="mp3",
        chunk_max_chars=40,
        normalize_text=False,
        qa=True,
        asr_model_dir=asr_model_dir(),
    )
    yield create_celery(settings)
    redis.Redis.from_url(broker).flushdb()


def _rendered_job(app: VoicebatchCelery, settings: Settings) -> uuid.UUID:
    """A job rendered and assembled by the worker's task bodies, each chunk with the
    verdict a renderer with QA would have stored; its finalize is due."""
    resources = app.context.resources
    parsed = document_from_chapters(
        "Book", [("One", "First line here. Second line here."), ("Two", "Third line here.")]
    )
    submitted = submit(
        resources.factory, settings, parsed, folder=resources.output_store, callback_url=HOOK
    )
    job = submitted.job_id
    ids = [c for group in submitted.chunk_groups for c in group]
    ready = render_ids(resources, settings, job, ids).ready_items
    with transaction(resources.factory) as session:
        for item in store.job_items(session, job_id=job):
            for chunk in store.item_chunks(session, item_id=item.id):
                words = chunk.text.split()
                step = (chunk.duration_seconds or 1.0) / len(words)
                timed = [
                    {"text": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
                    for i, w in enumerate(words)
                ]
                columns = {"qa_error_rate": 0.0, "qa_flags": "", "qa_takes": 1, "qa_words": timed}
                assert verdicts.record_verdict(session, chunk_id=chunk.id, columns=columns)
    for item_id in ready:
        tasks.assemble(app.context, str(job), str(item_id))
    with transaction(resources.factory) as session:
        assert store.get_job(session, job).status == JobStatus.ASSEMBLING
    return job


def _folder(app: VoicebatchCelery, job: uuid.UUID) -> Path:
    with transaction(app.context.resources.factory) as session:
        uri = store.get_job(session, job).output_uri
    assert uri is not None
    view = app.context.resources.output_store(uri)
    assert isinstance(view, WriteOnceStore) and isinstance(view.inner, LocalObjectStore)
    return view.inner.root


def _state(app: VoicebatchCelery, job: uuid.UUID) -> tuple[JobStatus, Any, list[str]]:
    with transaction(app.context.resources.factory) as session:
        row = session.get(Job, job)
        assert row is not None
        events = [d.event for d in job_deliveries(session, job_id=job)]
        return row.status, row.qa, events


def _chunks(app: VoicebatchCelery, job: uuid.UUID) -> int:
    with transaction(app.context.resources.factory) as session:
        return store.get_job(session, job).chunks_total


def test_a_job_is_not_done_until_its_qa_results_are_written(app: VoicebatchCelery) -> None:
    job = _rendered_job(app, app.settings)
    folder = _folder(app, job)
    (folder / "qa.json").mkdir()  # qa.json cannot be written: the QA step fails

    with pytest.raises(OSError):
        tasks.finalize(app.context, str(job))
    status, qa, events = _state(app, job)
    # before: done, its job.done webhook queued, and no QA summary anywhere
    assert status == JobStatus.ASSEMBLING, (status, events)
    assert events == [] and qa is None
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "qa" not in manifest  # the book's files are there; the job is not final

    (folder / "qa.json").rmdir()  # the trouble passes: the next finalization does it all
    tasks.finalize(app.context, str(job))
    status, qa, events = _state(app, job)
    assert status == JobStatus.DONE and events == ["job.done"]
    manifest = json.loads((folder / "manifest.json").read_text())
    chunks = _chunks(app, job)
    assert manifest["qa"]["live"] is True and manifest["qa"]["chunks"] == chunks
    assert qa is not None and qa["checked_at"] == manifest["qa"]["checked_at"]
    assert json.loads((folder / "qa.json").read_text())["summary"]["chunks"] == chunks
    for chapter in manifest["chapters"]:  # the word times reach the timing files
        timings = json.loads((folder / chapter["timings"]["json"]).read_text())
        for entry in timings["chunks"]:
            assert [w["text"] for w in entry["words"]] == entry["text"].split()


def test_a_job_with_a_read_along_is_done_with_its_epub_listed_and_valid(
    app: VoicebatchCelery,
) -> None:
    settings = app.settings.model_copy(update={"read_along": True})
    job = _rendered_job(app, settings)
    folder = _folder(app, job)
    assert (folder / SOURCE_KEY).is_file()  # the written text, stored at submit
    (folder / "book.epub").mkdir()  # the EPUB cannot be written, after QA's results

    with pytest.raises(OSError):
        tasks.finalize(app.context, str(job))
    status, _, events = _state(app, job)
    assert status == JobStatus.ASSEMBLING and events == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["qa"]["chunks"] == _chunks(app, job)  # QA's results were written

    (folder / "book.epub").rmdir()
    tasks.finalize(app.context, str(job))  # QA's results written again, then the EPUB
    status, qa, events = _state(app, job)
    assert status == JobStatus.DONE and events == ["job.done"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["qa"]["checked_at"] == qa["checked_at"]
    assert manifest["read_along"]["file"] == "book.epub"
    assert manifest["read_along"]["word_clips"] > 0  # QA's word times, read from the files
    with zipfile.ZipFile(folder / "book.epub") as epub:
        page = re.sub(r"<[^>]+>", "", epub.read("EPUB/ch1.xhtml").decode())
        assert "First line here. Second line here." in page  # the text, word by word
    assert_epubcheck_passes(folder / "book.epub")
