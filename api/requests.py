"""Request parsing for POST /v1/jobs: a JSON body or a multipart upload -> a
`JobSubmission` (the checked document, its kind, per-job setting overrides, cover and
lexicon). `JOB_BODY` describes both forms in the OpenAPI schema."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from typing import Any, get_args

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.errors import UnsupportedMediaType
from api.schemas import JobRequest
from pipeline.audio.cover import Cover, document_cover
from pipeline.config import LOUDNESS_PRESETS, OUTPUT_FORMATS, MasterFormat, Settings
from pipeline.errors import FieldError
from pipeline.ingest import CatalogueFormat, ParsedSource
from pipeline.plan.documents import (
    cover_from_request,
    document_from_chapters,
    document_from_items,
    document_from_text,
    document_from_upload,
    lexicon_from_request,
)
from pipeline.plan.submit import job_settings
from pipeline.text.lexicon import Lexicon

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
                            "enum": list(OUTPUT_FORMATS),
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
                        "master": {"type": "string", "enum": list(get_args(MasterFormat))},
                        "subtitles": {
                            "type": "string",
                            "description": "Comma-separated: srt,vtt,json (empty: none).",
                        },
                        "loudness_preset": {
                            "type": "string",
                            "enum": list(LOUDNESS_PRESETS),
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


@dataclass(frozen=True)
class JobSubmission:
    """A parsed submit request, not yet checked against the server's engine."""

    parsed: ParsedSource  # the checked document and its source
    kind: str  # "book" or "catalogue"
    overrides: dict[str, Any]  # per-job settings; None: the server's
    cover: Cover | None
    lexicon: Lexicon | None


def _validation(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    )


def _base64_cover(text: str | None) -> Cover | None:
    if text is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FieldError("cover", "is not valid base64") from exc
    return cover_from_request(data)


async def parse_submission(request: Request, settings: Settings) -> JobSubmission:
    """The request as a checked document, its kind, per-job setting overrides, cover and
    lexicon.

    An uploaded .csv or .jsonl is a catalogue, read with the request's column names
    (default: the server's `settings`)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _from_form(request, settings)
    if content_type != "application/json":
        raise UnsupportedMediaType(
            "content-type", "send application/json or multipart/form-data with a `file`"
        )
    raw = await request.body()
    try:
        body = await run_in_threadpool(JobRequest.model_validate_json, raw)
    except ValidationError as exc:
        raise _validation(exc) from exc
    return await run_in_threadpool(_from_json, body)


async def _from_form(request: Request, settings: Settings) -> JobSubmission:
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
    cover = cover_from_request(await picture.read()) if picture is not None else None
    lexicon_part = form.get("lexicon")
    lexicon_text: str | None = None
    if isinstance(lexicon_part, str):
        lexicon_text = lexicon_part
    elif lexicon_part is not None:
        try:
            lexicon_text = (await lexicon_part.read()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FieldError("lexicon", "is not UTF-8 text") from exc
    lexicon = await run_in_threadpool(lexicon_from_request, lexicon_text)
    data = await upload.read()
    overrides = body.overrides()
    columns = CatalogueFormat.from_settings(job_settings(settings, overrides))
    keep = body.keep_front_matter
    parsed = await run_in_threadpool(
        document_from_upload,
        upload.filename or "",
        data,
        keep_front_matter=settings.keep_front_matter if keep is None else keep,
        catalogue=columns,
    )
    if body.title:
        parsed = ParsedSource(parsed.source, replace(parsed.document, title=body.title))
    if cover is None:
        cover = document_cover(parsed.document)
    return JobSubmission(parsed, parsed.document.kind, overrides, cover, lexicon)


def _from_json(body: JobRequest) -> JobSubmission:
    title = body.title or "Untitled"
    overrides = body.overrides()
    cover = _base64_cover(body.cover)
    lexicon = lexicon_from_request(body.lexicon)
    if body.items:
        parsed = document_from_items(title, [(i.id, i.text, i.voice) for i in body.items])
        return JobSubmission(parsed, "catalogue", overrides, cover, lexicon)
    if body.chapters:
        parsed = document_from_chapters(title, [(c.title, c.text) for c in body.chapters])
        return JobSubmission(parsed, "book", overrides, cover, lexicon)
    assert body.text is not None
    return JobSubmission(document_from_text(title, body.text), "book", overrides, cover, lexicon)
