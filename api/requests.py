"""Request parsing for POST /v1/jobs: a JSON body or a multipart upload -> a
`JobSubmission` (the checked document, its kind, per-job setting overrides, cover and
lexicon). `JOB_BODY` describes both forms in the OpenAPI schema."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from api.errors import UnsupportedMediaType
from api.schemas import CONTROL_CHARACTERS, JobRequest, RestoreRequest, control_character
from pipeline.audio.cover import Cover, document_cover
from pipeline.config import Settings
from pipeline.errors import FieldError
from pipeline.ingest import READERS, CatalogueFormat, ParsedSource
from pipeline.ingest.catalogue import CATALOGUE_READERS
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

# Uploads read as UTF-8 text, and the control bytes none of them may hold: form feed
# stays (a page break in plain text; the readers fold it into a space).
TEXT_UPLOADS = frozenset(
    [*(suffix for suffix, reader in READERS.items() if not reader.binary), *CATALOGUE_READERS]
)
CONTROL_BYTES = re.compile(b"[\\x00-\\x08\\x0b\\x0e-\\x1f]")

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
    "callback_url",
    "qa",
    "read_along",
)


def _form_field(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A multipart field's schema: the JSON body's field of the same name, not null."""
    given = fields[name]
    schema = next(s for s in given.get("anyOf", [given]) if s.get("type") != "null")
    return {**schema, "description": given.get("description", "")}


_JSON_FIELDS = JobRequest.model_json_schema()["properties"]
_FILE_PART = {"type": "string", "format": "binary"}
FORM_PARTS = frozenset([*FORM_FIELDS, "file", "cover", "lexicon", "subtitles"])
JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            **_FILE_PART,
                            "description": "The book (.txt, .md, .epub) or catalogue (.csv, "
                            ".jsonl); its name's suffix says which.",
                        },
                        **{name: _form_field(name, _JSON_FIELDS) for name in FORM_FIELDS},
                        "cover": {**_FILE_PART, "description": "Cover art, JPEG or PNG."},
                        "subtitles": {
                            "type": "string",
                            "description": "Comma-separated: srt,vtt,json (empty: none).",
                        },
                        "lexicon": {
                            **_FILE_PART,
                            "description": "A lexicon file: `word = replacement`, "
                            "`/regex/i = replacement`, `word = [[phonemes]]` lines.",
                        },
                    },
                }
            },
        },
    }
}


RESTORE_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RestoreRequest"}}
        },
    }
}
_RESTORE = TypeAdapter(RestoreRequest | None)


@dataclass(frozen=True)
class JobSubmission:
    """A parsed submit request, not yet checked against the server's engine."""

    parsed: ParsedSource  # the checked document and its source
    kind: str  # "book" or "catalogue"
    overrides: dict[str, Any]  # per-job settings; None: the server's
    cover: Cover | None
    lexicon: Lexicon | None
    callback_url: str | None = None  # the request's own (the key's default applies later)


def _overrides(body: JobRequest) -> dict[str, Any]:
    """The per-job settings the request asks for: JobRequest's, and the read-along EPUB."""
    return {**body.overrides(), "read_along": body.read_along}


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


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def parse_submission(request: Request, settings: Settings) -> JobSubmission:
    """The request as a checked document, its kind, per-job setting overrides, cover and
    lexicon.

    An uploaded .csv or .jsonl is a catalogue, read with the request's column names
    (default: the server's `settings`)."""
    content_type = _content_type(request)
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
    return await run_in_threadpool(_from_json, body, settings.job_max_chars)


async def _from_form(request: Request, settings: Settings) -> JobSubmission:
    try:
        form = await request.form(max_files=3, max_fields=19)
    except HTTPException as exc:  # Starlette's 400 for a malformed body or too many parts
        raise FieldError("body", f"malformed multipart body ({exc.detail})") from exc
    unknown = sorted(set(form.keys()) - FORM_PARTS)
    if unknown:
        raise FieldError(
            CONTROL_CHARACTERS.sub("?", unknown[0])[:100],
            f"is not a field of this request (send {', '.join(sorted(FORM_PARTS))})",
        )
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
    # Decoding a cover (even one within the pixel limit) is CPU work: off the event loop.
    cover = (
        await run_in_threadpool(cover_from_request, await picture.read())
        if picture is not None
        else None
    )
    lexicon_part = form.get("lexicon")
    lexicon_text: str | None = None
    if isinstance(lexicon_part, str):
        lexicon_text = lexicon_part
    elif lexicon_part is not None:
        try:
            lexicon_text = (await lexicon_part.read()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FieldError("lexicon", "is not UTF-8 text") from exc
    if lexicon_text is not None and (problem := control_character(lexicon_text)):
        raise FieldError("lexicon", problem)
    lexicon = await run_in_threadpool(lexicon_from_request, lexicon_text)
    data = await upload.read()
    _refuse_control_bytes(upload.filename or "", data)
    overrides = _overrides(body)
    columns = CatalogueFormat.from_settings(job_settings(settings, overrides))
    keep = body.keep_front_matter
    parsed = await run_in_threadpool(
        partial(
            document_from_upload,
            upload.filename or "",
            data,
            keep_front_matter=settings.keep_front_matter if keep is None else keep,
            catalogue=columns,
            max_chars=settings.job_max_chars,
        )
    )
    if body.title:
        parsed = ParsedSource(parsed.source, replace(parsed.document, title=body.title))
    if cover is None:
        cover = await run_in_threadpool(document_cover, parsed.document)
    return JobSubmission(parsed, parsed.document.kind, overrides, cover, lexicon, body.callback_url)


def _refuse_control_bytes(filename: str, data: bytes) -> None:
    """Refuse an uploaded text file (not an EPUB) that holds a control character other
    than tab, line feed, carriage return or form feed, naming the line. In UTF-8 such a
    byte is only ever that character, so the bytes are searched as they are."""
    name = Path(filename.replace("\\", "/")).name
    if Path(name).suffix.lower() not in TEXT_UPLOADS:
        return
    found = CONTROL_BYTES.search(data)
    if found is not None:
        line = data.count(b"\n", 0, found.start()) + 1
        shown = CONTROL_CHARACTERS.sub("?", name)
        raise FieldError(
            "file",
            f"{shown}: line {line}: has a control character (U+{found.group()[0]:04X}); "
            "a text file holds none (is it a binary file?)",
        )


def _from_json(body: JobRequest, max_chars: int) -> JobSubmission:
    title = body.title or "Untitled"
    overrides = _overrides(body)
    cover = _base64_cover(body.cover)
    lexicon = lexicon_from_request(body.lexicon)
    if body.items:
        parsed = document_from_items(
            title, [(i.id, i.text, i.voice) for i in body.items], max_chars=max_chars
        )
        return JobSubmission(parsed, "catalogue", overrides, cover, lexicon, body.callback_url)
    if body.chapters:
        parsed = document_from_chapters(
            title, [(c.title, c.text) for c in body.chapters], max_chars=max_chars
        )
        return JobSubmission(parsed, "book", overrides, cover, lexicon, body.callback_url)
    assert body.text is not None
    document = document_from_text(title, body.text, max_chars=max_chars)
    return JobSubmission(document, "book", overrides, cover, lexicon, body.callback_url)


async def restore_request(request: Request) -> RestoreRequest | None:
    """The restore options of POST /v1/jobs/{id}/restore: none (an empty body or null),
    or a JSON RestoreRequest. Read here rather than by FastAPI, whose body parsing answers
    400 (undocumented) for JSON it cannot decode."""
    raw = await request.body()
    if not raw.strip():
        return None
    if _content_type(request) != "application/json":
        raise UnsupportedMediaType("content-type", "send the restore options as application/json")
    try:
        return _RESTORE.validate_json(raw)
    except ValidationError as exc:
        raise _validation(exc) from exc
