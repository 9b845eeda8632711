"""The read-along EPUB as a file of the job (issue 18, §5, both modes): embedded
`render --read-along` lists it in the manifest's files (so `download` and the API's
outputs name it, kind `read_along`); a submitted book keeps its written text for the
finalizer, all or nothing with the job; a catalogue is refused, naming the field."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.assemble.keys import FILE_KINDS, SOURCE_KEY, describe_key
from pipeline.assemble.manifest import manifest_files, read_manifest
from pipeline.assemble.read_along_source import (
    document_from_json,
    document_json,
    write_job_read_along,
)
from pipeline.config import Settings
from pipeline.engines import engine_info
from pipeline.errors import FieldError, InputError, RetryableError
from pipeline.ingest import ParsedSource, load_source, parse_source
from pipeline.plan.documents import document_from_items, document_from_text
from pipeline.plan.submit import publish_job, submit_and_publish, submit_job
from pipeline.runner import LocalRuntime, outputs_current, render_file
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.storage.local import LocalObjectStore


def _parsed(path: Path) -> ParsedSource:
    source = load_source(path)
    return ParsedSource(source, parse_source(source))


def test_embedded_render_lists_the_epub_in_the_manifest(
    settings: Settings, book: Path, tmp_path: Path
) -> None:
    runtime = LocalRuntime.open(settings.model_copy(update={"read_along": True}))
    parsed = _parsed(book)
    out = tmp_path / "out"
    outcome = render_file(runtime, parsed, output_dir=out)
    assert outcome.read_along == "book.epub"
    manifest = read_manifest(LocalObjectStore(out))
    assert manifest is not None
    assert ("read_along", "book.epub") in manifest_files(manifest)
    assert "read_along" in FILE_KINDS and describe_key("book.epub") == "read-along EPUB"
    assert outputs_current(LocalObjectStore(out), outcome.job.job_id)
    (out / "book.epub").unlink()  # a listed file gone: the folder is not current
    assert not outputs_current(LocalObjectStore(out), outcome.job.job_id)


def test_the_stored_text_reads_back_as_the_document(book: Path) -> None:
    document = _parsed(book).document
    again = document_from_json(document_json(document))
    assert again.title == document.title and again.author == document.author
    assert [(c.title, c.paragraphs, c.heading) for c in again.chapters] == [
        (c.title, c.paragraphs, c.heading) for c in document.chapters
    ]
    assert document_json(document) == document_json(again)  # the same bytes each time


def test_a_folder_without_its_stored_text_says_so_in_one_line(
    settings: Settings, book: Path, tmp_path: Path
) -> None:
    runtime = LocalRuntime.open(settings)
    out = tmp_path / "out"
    render_file(runtime, _parsed(book), output_dir=out)
    with pytest.raises(InputError, match="its text for the read-along EPUB is missing"):
        write_job_read_along(LocalObjectStore(out), where="book.md")
    assert not (out / "book.epub").exists()
    assert write_job_read_along(LocalObjectStore(tmp_path / "empty"), where="x") is None


def _folder(uri: str) -> LocalObjectStore:
    return LocalObjectStore(Path(uri))


def test_a_submitted_book_keeps_its_text_and_a_withdrawn_one_leaves_nothing(
    settings: Settings,
) -> None:
    chosen = settings.model_copy(update={"read_along": True})
    runtime = LocalRuntime.open(chosen)
    parsed = document_from_text("Short", "A short book. Read along.")
    base = str(chosen.data_dir / "objects")
    submitted = submit_job(
        runtime.factory,
        parsed,
        engine=engine_info(chosen),
        settings=chosen,
        kind="book",
        owner_id=uuid.UUID(int=7),
        idempotency_key=None,
        output_base=base,
        folder=_folder,
    )
    folder = Path(base) / "jobs" / str(submitted.job_id)
    assert document_from_json((folder / SOURCE_KEY).read_bytes()).title == "Short"
    with transaction(runtime.factory) as session:
        assert store.get_job(session, submitted.job_id).options["read_along"] is True

    def broker_down(_job: uuid.UUID, _groups: list[list[uuid.UUID]]) -> None:
        raise RetryableError("broker unreachable")

    with pytest.raises(RetryableError):
        publish_job(
            runtime.factory,
            submitted,
            publish=broker_down,
            output_base=base,
            folder=_folder,
        )
    assert not (folder / SOURCE_KEY).exists()  # withdrawn: its stored text with it


def test_a_catalogue_with_read_along_is_refused_naming_the_field(settings: Settings) -> None:
    runtime = LocalRuntime.open(settings)
    parsed = document_from_items("Shop", [("a", "One item.", None)])
    with pytest.raises(FieldError) as refused:
        submit_and_publish(
            runtime.factory,
            parsed,
            engine=engine_info(settings),
            settings=settings,
            overrides={"read_along": True},
            kind="catalogue",
            owner_id=uuid.UUID(int=7),
            idempotency_key=None,
            publish=lambda *_: None,
        )
    assert refused.value.field == "read_along"
    assert "catalogue" in refused.value.message
    with transaction(runtime.factory) as session:
        assert store.list_jobs(session, limit=10, offset=0, owner_id=uuid.UUID(int=7)) == []
