"""Submitting through the API's pipeline side: request bodies -> checked documents -> one job."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.keys import cover_key
from pipeline.config import Settings
from pipeline.engines import engine_info
from pipeline.errors import FieldError, InputError
from pipeline.plan.documents import (
    document_from_chapters,
    document_from_items,
    document_from_text,
    document_from_upload,
)
from pipeline.plan.submit import check_submission, submit_job
from pipeline.render.messages import render_chunk_ids
from pipeline.render.renderer import ChunkRenderer
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus, ItemStatus, JobStatus
from pipeline.state.store import chunk_groups
from pipeline.storage.local import LocalObjectStore
from tests.support.rendering import CountingEngine

OWNER = uuid.UUID(int=7)


@pytest.mark.parametrize(
    ("items", "field", "words"),
    [
        ([("a", "one"), ("a", "two")], "items[1]", r"repeats the id of items\[0\]"),
        ([("x", "one"), (" ", "two")], "items[1]", "empty 'id'"),
        ([("x", "...")], "items[0]", "no words"),
        ([("x", "w " * 12_000)], "items[0]", "over the 20000"),
        ([("x", "Hi.", 5)], "items[0]", "'voice' is a number"),
        ([], "items", "is empty"),
    ],
)
def test_catalogue_items_are_refused_with_the_row_named(
    items: list[tuple[str, str]], field: str, words: str
) -> None:
    with pytest.raises(FieldError, match=words) as caught:
        document_from_items("Catalogue", items)
    assert caught.value.field == field and isinstance(caught.value, InputError)


def test_chapters_keep_their_titles_as_spoken_headings_and_their_paragraphs() -> None:
    parsed = document_from_chapters(
        "Book", [("One", "First para.\n\nSecond  para."), ("Two", "x y")]
    )
    first, second = parsed.document.chapters
    assert (first.title, first.paragraphs, first.heading) == (
        "One",
        ("First para.", "Second para."),
        True,
    )
    assert second.paragraphs == ("x y",)
    with pytest.raises(FieldError) as caught:
        document_from_chapters("Book", [("One", "ok"), ("Two", "  \n ")])
    assert caught.value.field == "chapters[1].text"
    # the same content gives the same source hash; other content another one
    assert (
        parsed.source.sha256
        == document_from_chapters(
            "Book", [("One", "First para.\n\nSecond  para."), ("Two", "x y")]
        ).source.sha256
    )
    assert parsed.source.sha256 != document_from_text("Book", "x y").source.sha256


def test_uploads_are_read_like_files_on_disk_and_named_without_their_path() -> None:
    parsed = document_from_upload("../../etc/story.md", b"# Story\n\n## One\n\nHello there.\n")
    assert parsed.source.path == Path("story.md") and parsed.document.title == "Story"
    with pytest.raises(FieldError, match=r"^file: scan\.pdf: unsupported input format") as caught:
        document_from_upload("scan.pdf", b"%PDF")
    assert "voicebatch-upload" not in caught.value.message  # no server paths leak
    with pytest.raises(FieldError, match="not valid UTF-8"):
        document_from_upload("latin.txt", "caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(FieldError, match="binary"):
        document_from_upload("x.txt", b"abc\x00def")


def test_submit_creates_an_owned_job_once_per_idempotency_key(
    db: sessionmaker[Session], settings: Settings
) -> None:
    settings = settings.model_copy(update={"task_chunks": 2})
    parsed = document_from_items("Catalogue", [(f"sku-{i}", f"Item number {i}.") for i in range(5)])
    args = {
        "engine": engine_info(settings),
        "settings": settings,
        "kind": "catalogue",
        "owner_id": OWNER,
    }
    first = submit_job(db, parsed, idempotency_key="k1", output_base="s3://b/p", **args)  # type: ignore[arg-type]
    again = submit_job(db, parsed, idempotency_key="k1", output_base="s3://b/p", **args)  # type: ignore[arg-type]
    other = submit_job(db, parsed, idempotency_key=None, output_base="s3://b/p", **args)  # type: ignore[arg-type]
    assert first.created and not again.created and again.job_id == first.job_id
    assert other.job_id != first.job_id
    assert again.chunk_groups == first.chunk_groups  # still pending: published again
    assert [len(g) for g in first.chunk_groups] == [2, 2, 1]
    with transaction(db) as session:
        job = store.get_job(session, first.job_id)
        assert (job.kind, job.owner_id, job.output_uri) == (
            "catalogue",
            OWNER,
            f"s3://b/p/jobs/{job.id}",
        )
        assert [i.title for i in store.job_items(session, job_id=job.id)] == [
            f"sku-{i}" for i in range(5)
        ]
        assert chunk_groups(session, job_id=job.id, size=10) == [
            [c for g in first.chunk_groups for c in g]
        ]
        assert len(store.list_jobs(session, owner_id=OWNER)) == 2
        assert store.list_jobs(session, owner_id=uuid.UUID(int=8)) == []


def test_repeated_texts_render_once_and_count_as_cache_hits(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    texts = ["Red chair.", "Blue table.", "Red chair.", "Green lamp.", "Blue table.", "Red chair."]
    parsed = document_from_items("Catalogue", [(f"sku-{i}", t) for i, t in enumerate(texts)])
    submitted = submit_job(
        db,
        parsed,
        engine=engine_info(settings),
        settings=settings,
        kind="catalogue",
        owner_id=OWNER,
        idempotency_key=None,
        output_base=str(tmp_path / "out"),
    )
    engine = CountingEngine()
    renderer = ChunkRenderer(
        factory=db, store_=LocalObjectStore(tmp_path / "objects"), engine=engine, settings=settings
    )
    ids = [c for group in submitted.chunk_groups for c in group]
    outcome = render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=ids)
    assert sorted(engine.requests) == ["Blue table.", "Green lamp.", "Red chair."]
    assert (renderer.stats.rendered, renderer.stats.cached) == (3, 3)
    assert len(outcome.ready_items) == 6 and outcome.retry_in is None
    # the same message again (a duplicate delivery) changes nothing and claims nothing
    again = render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=ids)
    assert again.ready_items == [] and len(engine.requests) == 3
    with transaction(db) as session:
        progress = store.job_progress(session, job_id=submitted.job_id)
        assert (progress.chunks_done, progress.chunks_cached) == (6, 3)
        assert {i.status for i in store.job_items(session, job_id=submitted.job_id)} == {
            ItemStatus.ASSEMBLING
        }
        assert store.get_job(session, submitted.job_id).status == JobStatus.RENDERING


def test_a_worker_with_another_model_version_fails_the_chunks_with_the_reason(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """Render queues are per engine, so only the model version can differ: no worker
    could do better, so the chunks fail with the reason instead of looping (issue 16.8)."""
    submitted = submit_job(
        db,
        document_from_text("T", "Hello there."),
        engine=engine_info(settings),
        settings=settings,
        kind="book",
        owner_id=OWNER,
        idempotency_key=None,
        output_base=str(tmp_path),
    )
    engine = CountingEngine()
    engine.model_version = "test-tone 2"  # type: ignore[misc]
    renderer = ChunkRenderer(
        factory=db, store_=LocalObjectStore(tmp_path / "o"), engine=engine, settings=settings
    )
    render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=submitted.chunk_groups[0])
    assert engine.requests == []
    with transaction(db) as session:
        assert store.job_progress(session, job_id=submitted.job_id).chunks_done == 0
        chunks = store.item_chunks(
            session, item_id=store.job_items(session, job_id=submitted.job_id)[0].id
        )
        assert {c.status for c in chunks} == {ChunkStatus.FAILED}
        assert all(
            "was planned for engine test-tone (test-tone 1)" in (c.error or "") for c in chunks
        )


def test_a_redelivered_message_waits_out_a_dead_workers_lease_then_takes_over(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    from datetime import timedelta

    submitted = submit_job(
        db,
        document_from_text("T", "Hello there. How are you?"),
        engine=engine_info(settings),
        settings=settings,
        kind="book",
        owner_id=OWNER,
        idempotency_key=None,
        output_base=str(tmp_path),
    )
    ids = submitted.chunk_groups[0]
    with transaction(db) as session:  # a worker leased them, then died (kill -9)
        held = store.lease_chunks(
            session,
            job_id=submitted.job_id,
            owner="gone:1:x",
            limit=10,
            ttl=timedelta(seconds=1),
            max_attempts=3,
            chunk_ids=ids,
        )
    assert len(held) == len(ids)
    engine = CountingEngine()
    renderer = ChunkRenderer(
        factory=db, store_=LocalObjectStore(tmp_path / "o"), engine=engine, settings=settings
    )
    early = render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=ids)
    # not acknowledged as done: the message comes back to these chunks shortly
    assert engine.requests == [] and early.retry_in is not None and 0.2 <= early.retry_in <= 2.0
    import time

    time.sleep(1.2)
    late = render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=ids)
    assert late.retry_in is None and len(engine.requests) == len(ids)
    assert len(late.ready_items) == 1
    with transaction(db) as session:
        item = store.get_item(session, item_id=late.ready_items[0])
        assert item.status == ItemStatus.ASSEMBLING
    again = render_chunk_ids(renderer, job_id=submitted.job_id, chunk_ids=ids)
    # a duplicate claims nothing: the item is assembled once, published at its claim (a
    # publish lost after the claim is the reconciler's to make good, by its lease)
    assert again.ready_items == [] and again.retry_in is None


def test_a_submitted_cover_waits_in_the_job_folder_and_goes_if_the_job_does_not(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.audio.cover import cover_from_bytes
    from pipeline.storage.local import LocalObjectStore
    from tests.support.images import image_bytes

    cover = cover_from_bytes(image_bytes("jpeg"))
    root = tmp_path / "objects"

    def folder(uri: str) -> LocalObjectStore:
        return LocalObjectStore(Path(uri))

    args = {
        "engine": engine_info(settings),
        "settings": settings,
        "kind": "book",
        "owner_id": OWNER,
        "idempotency_key": None,
        "output_base": str(root),
        "cover": cover,
        "folder": folder,
    }
    parsed = document_from_chapters("Covered", [("One", "Words to say.")])
    submitted = submit_job(db, parsed, **args)  # type: ignore[arg-type]
    job_folder = root / "jobs" / str(submitted.job_id)
    assert (job_folder / "cover.jpg").read_bytes() == cover.data
    with transaction(db) as session:
        options = store.get_job(session, submitted.job_id).options
    assert options["cover"] == cover.option(cover_key(cover))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(store, "create_job", broken)
    with pytest.raises(RuntimeError):
        submit_job(db, parsed, **args)  # type: ignore[arg-type]
    covers = sorted(p.parent.name for p in (root / "jobs").rglob("cover.jpg"))
    assert covers == [str(submitted.job_id)]  # the failed submit left no cover behind


def test_an_unknown_item_voice_names_the_item_once(settings: Settings) -> None:
    document = document_from_items("Catalogue", [("a", "Hello.", "nobody")])
    with pytest.raises(FieldError) as caught:
        check_submission(
            document.document, settings=settings, engine=engine_info(settings), lexicon=None
        )
    assert caught.value.field == "items[0].voice"
    assert str(caught.value).startswith("items[0].voice: unknown voice 'nobody'"), caught.value
