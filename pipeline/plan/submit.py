"""Submitting jobs (distributed mode): a checked Document -> one job in one transaction
-> chunk ids to publish; a repeated Idempotency-Key gets the earlier job back.

Everything is checked before the job is committed (`check_submission`, then
`submit_job`); a request that fails any check leaves nothing behind, and neither does a
job whose work could not be published (`publish_job` withdraws it). The items are
planned into the database a batch at a time inside the one transaction that creates the
job (`plan.spec.stream_spec`, `state.store.create_job`), so a 100,000-item catalogue is
never held whole as specs or rows, and an error met at its last item rolls back the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.keys import SOURCE_KEY, cover_key
from pipeline.assemble.read_along_source import store_source
from pipeline.audio.cover import Cover
from pipeline.audio.presets import mastering_options
from pipeline.config import Settings
from pipeline.engines import EngineInfo, takes_phonemes
from pipeline.engines.maya1.tokens import check_description
from pipeline.errors import FieldError, InputError, RetryableError
from pipeline.ingest import Document, ParsedSource
from pipeline.plan.spec import StreamedSpec, job_lexicon, stream_spec
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import Job, JobStatus
from pipeline.state.specs import ItemSpec
from pipeline.storage.base import ObjectStore
from pipeline.storage.keys import job_folder
from pipeline.text.lexicon import Lexicon
from pipeline.text.segment import has_speech
from pipeline.webhooks.callbacks import check_callback_url


@dataclass(frozen=True)
class SubmittedJob:
    job_id: uuid.UUID
    created: bool  # False: an earlier submit with the same Idempotency-Key made it
    status: JobStatus
    chunk_groups: list[list[uuid.UUID]]  # chunk ids to publish, one render message each
    read_along: bool = False  # its written text is stored beside its files (SOURCE_KEY)


def job_settings(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """`settings` with a request's per-job overrides applied (None: the server's)."""
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def job_output_uri(output_base: str, job_id: uuid.UUID) -> str:
    """Where a job's output files go under `output_base`."""
    return f"{output_base.rstrip('/')}/{job_folder(job_id)}"


def _check_voice(field: str, voice: str, engine: EngineInfo, *, where: str = "") -> None:
    """A voice is a name the server knows, never a path (a path would let a client load
    any file on the server as a model). Maya1 voices are descriptions in words, so any
    is known that its prompt can hold."""
    if engine.name == "maya1":
        try:
            check_description(voice)  # a quote or a line break would break the prompt
        except InputError as exc:
            raise FieldError(field, f"{where}{exc.message}") from exc
    if "/" in voice or "\\" in voice:
        raise FieldError(field, f"{where}a voice is a name the server knows, not a path")
    if engine.name != "maya1" and voice != engine.default_voice:
        raise FieldError(
            field, f"{where}unknown voice {voice!r} (this server speaks {engine.default_voice})"
        )


def check_submission(
    document: Document, *, settings: Settings, engine: EngineInfo, lexicon: Lexicon | None
) -> None:
    """The submit rules a request's job settings, voices and lexicon must meet on this
    server's engine; a FieldError names the request field that breaks one."""
    try:
        mastering_options(settings)
    except InputError as exc:
        raise FieldError("loudness_preset", exc.message) from exc
    if settings.voice:
        _check_voice("voice", settings.voice, engine)
    if settings.qa and settings.asr_model_dir is None:
        raise FieldError(
            "qa", "this server has no speech-recognition model (VOICEBATCH_ASR_MODEL_DIR)"
        )
    for index, chapter in enumerate(document.chapters):
        if chapter.voice:
            where = chapter.where or f"items[{index}]"
            field = f"{where}.voice" if where.startswith("items[") else "file"
            # the field names the item already; a file's errors say which row
            _check_voice(
                field, chapter.voice, engine, where="" if field != "file" else f"{where}: "
            )
    if lexicon is not None:
        try:
            lexicon.check_engine(engine.name, takes_phonemes(engine))
        except InputError as exc:
            raise FieldError("lexicon", exc.message.removeprefix("lexicon ")) from exc


def _replay(
    session: Session, earlier: Job, same_request: Callable[[Job], bool], settings: Settings
) -> SubmittedJob:
    """The job an earlier submit with this Idempotency-Key made, if this request is the
    same in every respect (`same_request(earlier)`: its text, format, voice and every
    other option; a key reused for anything else is refused, never answered with the
    first job). Its chunks still waiting are handed back for publishing again (the
    first try may have lost some messages; a duplicate message changes nothing)."""
    if not same_request(earlier):
        raise FieldError(
            "Idempotency-Key",
            "was already used for a different request (its text, format, voice or options "
            "differ); use a new key",
        )
    groups = (
        []
        if earlier.status.final
        else store.chunk_groups(session, job_id=earlier.id, size=settings.task_chunks)
    )
    return SubmittedJob(earlier.id, False, earlier.status, groups)


@contextmanager
def _named_fields(kind: str) -> Iterator[None]:
    """A catalogue's planning errors name the request field: an item's file name is its
    entry's `id` (JSON items), anything else about a file is the uploaded `file`."""
    try:
        yield
    except InputError as exc:
        if isinstance(exc, FieldError) or kind != "catalogue":
            raise
        where, _, problem = exc.message.partition(": ")
        if where.startswith("items["):
            raise FieldError(f"{where}.id", problem) from exc
        raise FieldError("file", exc.message) from exc


def submit_job(
    factory: sessionmaker[Session],
    parsed: ParsedSource,
    *,
    engine: EngineInfo,
    settings: Settings,
    kind: str,
    owner_id: uuid.UUID,
    idempotency_key: str | None,
    output_base: str,
    cover: Cover | None = None,
    folder: Callable[[str], ObjectStore] | None = None,
    lexicon: Lexicon | None = None,
    callback_url: str | None = None,
) -> SubmittedJob:
    """Create the job (or find the one this Idempotency-Key made) and its chunk groups.

    A cover is written into the job's output folder (`folder(output_uri)`) before the
    job exists, since the assemble workers read it from there; if the job is not
    created, the cover is removed again. So is the book's written text, for a job that
    asks for a read-along EPUB (`settings.read_along`; a catalogue has none): the
    finalizer builds the EPUB from it (pipeline.assemble.read_along_source).
    """
    read_along = settings.read_along and kind != "catalogue"
    max_chars = min(settings.chunk_max_chars, engine.max_chunk_chars)
    for index, chapter in enumerate(parsed.document.chapters):
        spoken = chapter.spoken_paragraphs(read_titles=settings.read_titles)
        if not has_speech(spoken, max_chars):
            where = "items" if kind == "catalogue" else "chapters"
            raise FieldError(f"{where}[{index}]", "has no text to speak")
    chosen_lexicon = job_lexicon(settings, lexicon)

    def planned(output_uri: str) -> StreamedSpec:
        # The spec an item at a time: the rows are inserted as they are planned, so a
        # 100,000-item catalogue is never held whole as specs or rows (only its Document).
        with _named_fields(kind):
            streamed = stream_spec(
                parsed.document,
                parsed.source,
                engine=engine,
                settings=settings,
                output_uri=output_uri,
                kind=kind,
                cover=cover,
                lexicon=chosen_lexicon,
            )
        return streamed

    def planned_items(streamed: StreamedSpec) -> Iterator[ItemSpec]:
        with _named_fields(kind):
            yield from streamed.items()

    def same_request(earlier: Job) -> bool:
        # The job's fingerprint covers the whole request (source, engine, voice, format,
        # options, text rules, output folder): planned again into the earlier job's
        # folder, an identical request has an identical fingerprint.
        streamed = planned(earlier.output_uri or "")
        for _ in planned_items(streamed):
            pass
        # The callback URL is not in the fingerprint (it changes no audio), so apart.
        # Nor is the read-along EPUB, which is made from the same audio.
        return (
            streamed.fingerprint == earlier.fingerprint
            and earlier.callback_url == callback_url
            and bool((earlier.options or {}).get("read_along")) == read_along
        )

    if idempotency_key is not None:
        with transaction(factory) as session:
            earlier = store.find_idempotent_job(session, owner_id=owner_id, key=idempotency_key)
            if earlier is not None:
                return _replay(session, earlier, same_request, settings)
    job_id = uuid.uuid4()
    output_uri = job_output_uri(output_base, job_id)
    streamed = planned(output_uri)
    # Until its last item is planned the job's fingerprint is unknown: a placeholder of
    # its own id (unique) stands in, inside the transaction that creates it.
    header = replace(
        streamed.header,
        owner_id=owner_id,
        idempotency_key=idempotency_key,
        fingerprint=job_id.hex,
        callback_url=callback_url,
        options={**streamed.header.options, **({"read_along": True} if read_along else {})},
    )
    inputs_folder = None
    if cover is not None or read_along:
        if folder is None:
            raise ValueError("submit_job needs `folder` to store a cover or the source")
        inputs_folder = folder(output_uri)
    if inputs_folder is not None and cover is not None:
        inputs_folder.put(cover_key(cover), cover.data, content_type=cover.mime_type)
    if inputs_folder is not None and read_along:
        store_source(inputs_folder, parsed.document)
    try:
        with transaction(factory) as session:
            store.create_job(session, spec=header, job_id=job_id, items=planned_items(streamed))
            store.set_fingerprint(session, job_id=job_id, fingerprint=streamed.fingerprint)
            groups = store.chunk_groups(session, job_id=job_id, size=settings.task_chunks)
    except BaseException as exc:
        if inputs_folder is not None and cover is not None:
            inputs_folder.delete(cover_key(cover))  # no job: nothing of it is left behind
        if inputs_folder is not None and read_along:
            inputs_folder.delete(SOURCE_KEY)
        if not isinstance(exc, IntegrityError) or idempotency_key is None:
            raise
        # The same key, submitted twice at the same moment: the first one won.
        with transaction(factory) as session:
            earlier = store.find_idempotent_job(session, owner_id=owner_id, key=idempotency_key)
            if earlier is None:
                raise
            return _replay(session, earlier, same_request, settings)
    with transaction(factory) as session:
        # A big job changes the tables' size: the planner learns it before any message.
        store.refresh_planner_stats(session, rows=sum(map(len, groups)))
    return SubmittedJob(job_id, True, JobStatus.PENDING, groups, read_along)


def publish_job(
    factory: sessionmaker[Session],
    submitted: SubmittedJob,
    *,
    publish: Callable[[uuid.UUID, list[list[uuid.UUID]]], None],
    output_base: str,
    cover: Cover | None = None,
    folder: Callable[[str], ObjectStore] | None = None,
) -> None:
    """Publish a submitted job's chunk groups (`publish(job_id, groups)`).

    A replay publishes the chunks still waiting again: the first try may have lost some;
    duplicates change nothing. If publishing a job this submit created fails, the job is
    withdrawn (and its cover removed) so that nothing is left behind; if it can no
    longer be withdrawn, the error says to retry with the same Idempotency-Key.
    """
    try:
        publish(submitted.job_id, submitted.chunk_groups)
    except RetryableError as exc:
        if not submitted.created:
            raise
        with transaction(factory) as session:
            withdrawn = store.withdraw_job(session, job_id=submitted.job_id)
        if withdrawn and (cover is not None or submitted.read_along):
            if folder is None:
                raise ValueError("publish_job needs `folder` to remove a cover") from exc
            left = folder(job_output_uri(output_base, submitted.job_id))
            if cover is not None:
                left.delete(cover_key(cover))
            if submitted.read_along:
                left.delete(SOURCE_KEY)
        if not withdrawn:
            raise RetryableError(
                f"job {submitted.job_id} was created but not all of its work could be queued "
                f"({exc.message}); retry with the same Idempotency-Key to queue the rest"
            ) from exc
        raise


def submit_and_publish(
    factory: sessionmaker[Session],
    parsed: ParsedSource,
    *,
    engine: EngineInfo,
    settings: Settings,
    overrides: Mapping[str, Any],
    kind: str,
    owner_id: uuid.UUID,
    idempotency_key: str | None,
    publish: Callable[[uuid.UUID, list[list[uuid.UUID]]], None],
    cover: Cover | None = None,
    folder: Callable[[str], ObjectStore] | None = None,
    lexicon: Lexicon | None = None,
    callback_url: str | None = None,
    callback_field: str = "callback_url",
) -> SubmittedJob:
    """A request's job, from its parsed body to published messages: the request's
    overrides applied to the server's `settings` and checked, the job created (or the one
    its Idempotency-Key made found), and its chunk groups published, or the job withdrawn
    when they cannot be. Output goes under the server's storage URL. `callback_url`
    (checked, a refusal naming `callback_field`) receives the job's final-state webhook."""
    chosen = job_settings(settings, overrides)
    if overrides.get("read_along") and kind == "catalogue":
        raise FieldError(
            "read_along", "makes a book's EPUB; a catalogue (CSV or JSONL items) has none"
        )
    check_submission(parsed.document, settings=chosen, engine=engine, lexicon=lexicon)
    check_callback_url(callback_url, settings, field=callback_field)
    output_base = settings.resolved_storage_url
    submitted = submit_job(
        factory,
        parsed,
        engine=engine,
        settings=chosen,
        kind=kind,
        owner_id=owner_id,
        idempotency_key=idempotency_key,
        output_base=output_base,
        cover=cover,
        folder=folder,
        lexicon=lexicon,
        callback_url=callback_url,
    )
    publish_job(
        factory, submitted, publish=publish, output_base=output_base, cover=cover, folder=folder
    )
    return submitted
