"""/v1/jobs: submit, list, inspect, cancel, download. Each handler: check, call, translate."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api import metrics
from api.app import ApiContext, error_response
from api.schemas import (
    ChunkCounts,
    ErrorBody,
    FailedChunk,
    ItemCounts,
    JobOut,
    JobPage,
    JobRequest,
)
from pipeline.assemble.keys import cover_key
from pipeline.audio.cover import Cover, cover_from_bytes, document_cover
from pipeline.audio.presets import mastering_options
from pipeline.engines import EngineInfo, takes_phonemes
from pipeline.errors import InputError, RetryableError
from pipeline.ingest import CatalogueFormat, ParsedSource
from pipeline.plan.documents import (
    FieldError,
    document_from_chapters,
    document_from_items,
    document_from_text,
    document_from_upload,
)
from pipeline.plan.submit import submit_job
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.keys import authenticate
from pipeline.state.models import ApiKey, Job
from pipeline.storage.base import ObjectStore
from pipeline.storage.factory import store_at
from pipeline.text.lexicon import Lexicon, lexicon_from_mapping, parse_lexicon

router = APIRouter(prefix="/v1", tags=["jobs"])
bearer = HTTPBearer(auto_error=False, description="An API key from `voicebatch keys create`.")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked API key."},
    404: {"model": ErrorBody, "description": "No such job for this key."},
    422: {"model": ErrorBody, "description": "Invalid request; `field` names the culprit."},
    429: {"model": ErrorBody, "description": "Rate limit; retry after Retry-After seconds."},
}


class Unauthorized(InputError):
    exit_code = 3
    http_status = 401


class UnsupportedMediaType(FieldError):
    http_status = 415


class RateLimited(InputError):
    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit reached; retry in {retry_after} s")
        self.retry_after = retry_after


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(context_of)]


def session_of(context: Context) -> Iterator[Session]:
    with transaction(context.factory) as session:
        yield session


SessionDep = Annotated[Session, Depends(session_of)]


def current_key(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    with transaction(context.factory) as session:
        key = authenticate(session, credentials.credentials)
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    if context.limiter is not None:
        wait = context.limiter.hit(str(key.id))
        if wait is not None:
            metrics.RATE_LIMITED.inc()
            raise RateLimited(wait)
    return key


KeyDep = Annotated[ApiKey, Depends(current_key)]


def job_out(session: Session, job: Job, *, detail: bool = True) -> JobOut:
    progress = store.job_progress(session, job_id=job.id)
    failed = (
        [
            FailedChunk(seq=c.seq, text=c.text, error=c.error)
            for c in store.failed_chunks(session, job_id=job.id)
        ]
        if detail
        else []
    )
    return JobOut(
        id=job.id,
        status=str(job.status),
        kind=job.kind,
        title=job.title,
        engine=job.engine,
        voice=job.voice,
        format=job.output_format,
        progress=round(progress.fraction, 4),
        chunks=ChunkCounts(
            total=progress.chunks_total,
            done=progress.chunks_done,
            failed=progress.chunks_failed,
            pending=progress.chunks_pending,
            leased=progress.chunks_leased,
            cached=progress.chunks_cached,
        ),
        items=ItemCounts(
            total=progress.items_total, done=progress.items_done, failed=progress.items_failed
        ),
        audio_seconds=round(progress.audio_seconds, 3),
        error=job.error,
        failed=failed,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def _validation(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    )


FORM_FIELDS = (
    "title",
    "format",
    "voice",
    "chapter_files",
    "master",
    "loudness_preset",
    "normalize",
    "name_template",
    "id_column",
    "text_column",
    "voice_column",
    "keep_front_matter",
)
Parsed = tuple[ParsedSource, str, dict[str, Any], Cover | None, Lexicon | None]


def _lexicon(given: str | dict[str, str] | None) -> Lexicon | None:
    """A request's lexicon (file text or {word: replacement}); errors name the field."""
    if given is None:
        return None
    try:
        if isinstance(given, str):
            return parse_lexicon(given, name="lexicon")
        return lexicon_from_mapping(given, name="lexicon")
    except InputError as exc:
        raise FieldError("lexicon", exc.message.removeprefix("lexicon ")) from exc


def _cover(data: bytes | None, field: str = "cover") -> Cover | None:
    if data is None:
        return None
    try:
        return cover_from_bytes(data, name="the image")
    except InputError as exc:
        raise FieldError(field, exc.message.removeprefix("the image: ")) from exc


def _base64_cover(text: str | None) -> Cover | None:
    if text is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FieldError("cover", "is not valid base64") from exc
    return _cover(data)


async def _parse(request: Request, context: ApiContext) -> Parsed:
    """The request as a checked document, its kind, per-job setting overrides, cover and
    lexicon.

    An uploaded .csv or .jsonl is a catalogue, read with the request's column names
    (default: the server's settings)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=3, max_fields=18)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise FieldError("file", "missing: send the book as the multipart field `file`")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        picture = form.get("cover")
        try:
            body = JobRequest.model_validate(
                {
                    "text": "-",
                    **{k: v for k, v in fields.items() if k in FORM_FIELDS},
                    **(
                        {"subtitles": [k for k in fields["subtitles"].split(",") if k.strip()]}
                        if "subtitles" in fields
                        else {}
                    ),
                }
            )
        except ValidationError as exc:
            raise _validation(exc) from exc
        if isinstance(picture, str):
            raise FieldError("cover", "send the cover as a file part, not a text field")
        cover = _cover(await picture.read()) if picture is not None else None
        lexicon_part = form.get("lexicon")
        lexicon_text: str | None = None
        if isinstance(lexicon_part, str):
            lexicon_text = lexicon_part
        elif lexicon_part is not None:
            try:
                lexicon_text = (await lexicon_part.read()).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FieldError("lexicon", "is not UTF-8 text") from exc
        lexicon = await run_in_threadpool(_lexicon, lexicon_text)
        data = await upload.read()
        overrides = body.overrides()
        columns = CatalogueFormat.from_settings(
            context.settings.model_copy(
                update={k: v for k, v in overrides.items() if v is not None}
            )
        )
        keep = body.keep_front_matter
        parsed = await run_in_threadpool(
            document_from_upload,
            upload.filename or "",
            data,
            keep_front_matter=context.settings.keep_front_matter if keep is None else keep,
            catalogue=columns,
        )
        if body.title:
            parsed = ParsedSource(parsed.source, replace(parsed.document, title=body.title))
        if cover is None:
            cover = document_cover(parsed.document)
        return parsed, parsed.document.kind, overrides, cover, lexicon
    if content_type != "application/json":
        raise UnsupportedMediaType(
            "content-type", "send application/json or multipart/form-data with a `file`"
        )
    raw = await request.body()
    try:
        body = await run_in_threadpool(JobRequest.model_validate_json, raw)
    except ValidationError as exc:
        raise _validation(exc) from exc
    return await run_in_threadpool(_document, body)


def _document(body: JobRequest) -> Parsed:
    title = body.title or "Untitled"
    overrides = body.overrides()
    cover = _base64_cover(body.cover)
    lexicon = _lexicon(body.lexicon)
    if body.items:
        return (
            document_from_items(title, [(i.id, i.text, i.voice) for i in body.items]),
            "catalogue",
            overrides,
            cover,
            lexicon,
        )
    if body.chapters:
        return (
            document_from_chapters(title, [(c.title, c.text) for c in body.chapters]),
            "book",
            overrides,
            cover,
            lexicon,
        )
    assert body.text is not None
    return document_from_text(title, body.text), "book", overrides, cover, lexicon


JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A .txt, .md or .epub book.",
                        },
                        "title": {"type": "string"},
                        "format": {
                            "type": "string",
                            "enum": ["wav", "flac", "mp3", "opus", "m4b"],
                        },
                        "voice": {"type": "string"},
                        "cover": {
                            "type": "string",
                            "format": "binary",
                            "description": "Cover art, JPEG or PNG.",
                        },
                        "chapter_files": {"type": "boolean"},
                        "keep_front_matter": {
                            "type": "boolean",
                            "description": "EPUB: read front and back matter too.",
                        },
                        "master": {"type": "string", "enum": ["none", "wav", "flac"]},
                        "subtitles": {
                            "type": "string",
                            "description": "Comma-separated: srt,vtt,json (empty: none).",
                        },
                        "loudness_preset": {
                            "type": "string",
                            "enum": ["none", "acx", "podcast", "broadcast"],
                        },
                        "normalize": {
                            "type": "boolean",
                            "description": "false: send the text as written.",
                        },
                        "lexicon": {
                            "type": "string",
                            "format": "binary",
                            "description": "A lexicon file: `word = replacement`, "
                            "`/regex/i = replacement`, `word = [[phonemes]]` lines.",
                        },
                    },
                }
            },
        },
    }
}


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobOut,
    summary="Submit a book (text, chapters or a file) or a catalogue (items).",
    openapi_extra=JOB_BODY,
    responses={
        **ERRORS,
        200: {"model": JobOut, "description": "Replay of an earlier Idempotency-Key."},
        413: {"model": ErrorBody, "description": "Body over the size limit."},
        503: {"model": ErrorBody, "description": "Broker unreachable; nothing was created."},
    },
)
async def submit(
    request: Request,
    response: Response,
    context: Context,
    key: KeyDep,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retrying with the same value returns the same job."),
    ] = None,
) -> JobOut:
    parsed, kind, overrides, cover, lexicon = await _parse(request, context)
    # Segmenting, hashing, inserting and publishing block: off the event loop with them.
    return await run_in_threadpool(
        _submit, context, key, parsed, kind, overrides, cover, lexicon, idempotency_key, response
    )


def _check_voice(field: str, voice: str, engine: EngineInfo, *, where: str = "") -> None:
    """A voice is a name the server knows, never a path (a path would let a client load
    any file on the server as a model). Maya1 voices are descriptions in words, so any
    is known."""
    if "/" in voice or "\\" in voice:
        raise FieldError(field, f"{where}a voice is a name the server knows, not a path")
    if engine.name != "maya1" and voice != engine.default_voice:
        raise FieldError(
            field, f"{where}unknown voice {voice!r} (this server speaks {engine.default_voice})"
        )


def _submit(
    context: ApiContext,
    key: ApiKey,
    parsed: ParsedSource,
    kind: str,
    overrides: dict[str, Any],
    cover: Cover | None,
    lexicon: Lexicon | None,
    idempotency_key: str | None,
    response: Response,
) -> JobOut:
    settings = context.settings.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    try:
        mastering_options(settings)
    except InputError as exc:
        raise FieldError("loudness_preset", exc.message) from exc
    engine = context.engine
    if settings.voice:
        _check_voice("voice", settings.voice, engine)
    for index, chapter in enumerate(parsed.document.chapters):
        if chapter.voice:
            where = chapter.where or f"items[{index}]"
            field = f"{where}.voice" if where.startswith("items[") else "file"
            _check_voice(field, chapter.voice, engine, where=f"{where}: ")
    if lexicon is not None:
        try:
            lexicon.check_engine(engine.name, takes_phonemes(engine))
        except InputError as exc:
            raise FieldError("lexicon", exc.message.removeprefix("lexicon ")) from exc
    submitted = submit_job(
        context.factory,
        parsed,
        engine=engine,
        settings=settings,
        kind=kind,
        owner_id=key.id,
        idempotency_key=idempotency_key,
        output_base=context.settings.resolved_storage_url,
        cover=cover,
        folder=lambda uri: folder_for(context, uri),
        lexicon=lexicon,
    )
    try:
        # A replay publishes the chunks still waiting again: the first try may have lost
        # some; duplicates change nothing.
        context.dispatcher.render(submitted.job_id, submitted.chunk_groups)
    except RetryableError as exc:
        if not submitted.created:
            raise
        with transaction(context.factory) as session:
            withdrawn = store.withdraw_job(session, job_id=submitted.job_id)
        if withdrawn and cover is not None:
            folder_for(context, _output_uri(context, submitted.job_id)).delete(cover_key(cover))
        if not withdrawn:
            raise RetryableError(
                f"job {submitted.job_id} was created but not all of its work could be queued "
                f"({exc.message}); retry with the same Idempotency-Key to queue the rest"
            ) from exc
        raise
    if submitted.created:
        metrics.JOBS_SUBMITTED.inc()
        metrics.CHUNKS_SUBMITTED.inc(sum(len(g) for g in submitted.chunk_groups))
        response.headers["Location"] = f"/v1/jobs/{submitted.job_id}"
    else:
        response.status_code = 200
    with transaction(context.factory) as session:
        return job_out(
            session, store.get_owned_job(session, job_id=submitted.job_id, owner_id=key.id)
        )


@router.get(
    "/jobs", response_model=JobPage, summary="This key's jobs, newest first.", responses=ERRORS
)
def list_jobs(
    session: SessionDep,
    key: KeyDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobPage:
    rows = store.list_jobs(session, limit=limit + 1, offset=offset, owner_id=key.id)
    jobs = [job_out(session, job, detail=False) for job in rows[:limit]]
    return JobPage(jobs=jobs, next_offset=offset + limit if len(rows) > limit else None)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="One job: status, counts, errors.",
    responses=ERRORS,
)
def get_job(job_id: uuid.UUID, session: SessionDep, key: KeyDep) -> JobOut:
    return job_out(session, store.get_owned_job(session, job_id=job_id, owner_id=key.id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job that has not finished.",
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "The job already finished."}},
)
def cancel(job_id: uuid.UUID, context: Context, key: KeyDep) -> Any:
    with transaction(context.factory) as session:
        job = store.get_owned_job(session, job_id=job_id, owner_id=key.id)
        if not store.cancel_job(session, job_id=job_id):
            return error_response(
                409, f"job {job_id} is already {job.status}; it cannot be cancelled"
            )
    with transaction(context.factory) as session:
        return job_out(session, store.get_owned_job(session, job_id=job_id, owner_id=key.id))


def _output_uri(context: ApiContext, job_id: uuid.UUID) -> str:
    return f"{context.settings.resolved_storage_url.rstrip('/')}/jobs/{job_id}"


def folder_for(context: ApiContext, uri: str) -> ObjectStore:
    return store_at(
        uri,
        root=context.chunk_store,
        root_url=context.settings.resolved_storage_url,
        settings=context.settings,
    )
