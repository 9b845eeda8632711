"""Request and response bodies of the submit API (they are its OpenAPI schema)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from api.read_along_schemas import QaOut, ReadAlongRequest
from pipeline.assemble.keys import FileKind
from pipeline.config import LoudnessPreset, MasterFormat, OutputFormat, RestoreTier, TimingFormat
from pipeline.errors import InputError
from pipeline.file_names import check_template

# The choices the pipeline declares, so the schema offers exactly what a job can be.
Format = OutputFormat
Master = MasterFormat
Timing = TimingFormat
Preset = LoudnessPreset

# C0 control characters other than tab, line feed and carriage return: PostgreSQL refuses
# NUL in text, and none of them is speech. Refused at the edge, naming the field.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
NO_CONTROL_PATTERN = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]*$"  # the same, for the schema


def control_character(text: str) -> str | None:
    """What is wrong with `text` if it holds a control character (which, and where), else
    None; the position is a line number when the text has several lines."""
    found = CONTROL_CHARACTERS.search(text)
    if found is None:
        return None
    where = (
        f"line {text.count(chr(10), 0, found.start()) + 1}"
        if "\n" in text
        else f"position {found.start() + 1}"
    )
    return f"has a control character (U+{ord(found.group()):04X}) at {where}; remove it"


def _printable(text: str) -> str:
    if problem := control_character(text):
        raise ValueError(problem)
    return text


class _NoControlCharacters:
    """Annotated marker: the string may hold no control character other than tab, line
    feed or carriage return (checked after its length; the schema gets the pattern)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_printable, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema = handler(schema)
        json_schema["pattern"] = NO_CONTROL_PATTERN
        return json_schema


PRINTABLE = _NoControlCharacters()

Column = Annotated[str, StringConstraints(min_length=1, max_length=200), PRINTABLE]

IDEMPOTENCY_KEY_PATTERN = "^[!-~]([ -~]{0,198}[!-~])?$"


def _idempotency_key(value: str | None) -> str | None:
    # An empty key is a client bug, not a key: taken as one, every such retry would
    # replay the first job the empty key made.
    if value is not None and not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, value):
        raise ValueError("must be 1 to 200 visible ASCII characters, with no space at either end")
    return value


IdempotencyKey = Annotated[str | None, AfterValidator(_idempotency_key)]


class ChapterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, StringConstraints(min_length=1, max_length=1000), PRINTABLE] = Field(
        description="Read aloud as its heading."
    )
    text: Annotated[str, StringConstraints(min_length=1), PRINTABLE] = Field(
        description="Paragraphs separated by blank lines."
    )


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, StringConstraints(min_length=1, max_length=200), PRINTABLE] = Field(
        description="Names the item's output file."
    )
    text: Annotated[str, StringConstraints(min_length=1, max_length=20_000), PRINTABLE]
    voice: Annotated[str, StringConstraints(max_length=1000), PRINTABLE] | None = Field(
        None, description="This item's own voice; default the job's."
    )


class JobRequest(ReadAlongRequest):
    """Exactly one of `text` (a book as plain text), `chapters` or `items` (a catalogue)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # The schema's form of `_exactly_one_body`: each of the three is non-empty
            # when given, so "exactly one is a string or array" is the same rule.
            "oneOf": [
                {"required": [name], "properties": {name: {"type": kind}}}
                for name, kind in (("text", "string"), ("chapters", "array"), ("items", "array"))
            ],
            "examples": [
                {"title": "A short book", "text": "The first sentence. And a second one."},
                {"items": [{"id": "sku-1", "text": "A red mug, for tea."}], "format": "mp3"},
            ],
        },
    )
    title: Annotated[str, StringConstraints(max_length=500), PRINTABLE] | None = Field(
        None, description="Default: 'Untitled'."
    )
    text: Annotated[str, StringConstraints(min_length=1), PRINTABLE] | None = None
    chapters: list[ChapterIn] | None = Field(None, min_length=1, max_length=10_000)
    items: list[ItemIn] | None = Field(None, min_length=1, max_length=100_000)
    format: Format | None = Field(None, description="Output format; default the server's.")
    voice: Annotated[str, StringConstraints(max_length=200), PRINTABLE] | None = Field(
        None, description="A voice name the server's engine knows."
    )
    chapter_files: bool | None = Field(
        None, description="One file per chapter besides the book; default the server's (on)."
    )
    master: Master | None = Field(
        None, description="Also a lossless master of every file under master/."
    )
    subtitles: list[Timing] | None = Field(
        None,
        description="Timing files beside each audio file, each kind once; [] for none.",
        json_schema_extra={"uniqueItems": True},
    )
    loudness_preset: Preset | None = Field(
        None, description="Master every file to acx, podcast or broadcast."
    )
    name_template: Annotated[str, StringConstraints(max_length=500), PRINTABLE] | None = Field(
        None,
        description="Catalogues: item file names under items/, from {id} {slug} {index} "
        "{ext}; default the server's ({id}.{ext}).",
    )
    id_column: Column | None = Field(None, description="Uploaded catalogues: the id column.")
    text_column: Column | None = Field(None, description="Uploaded catalogues: the text column.")
    voice_column: Column | None = Field(None, description="Uploaded catalogues: the voice column.")
    keep_front_matter: bool | None = Field(
        None,
        description="EPUB uploads: also read the cover, title page, copyright, contents, "
        "index...; default the server's (skipped).",
    )
    cover: str | None = Field(
        None,
        max_length=28 << 20,
        description="Cover art for the picture tags: a JPEG or PNG, base64-encoded.",
    )
    normalize: bool | None = Field(
        None,
        description="Spell out numbers, dates, money, abbreviations, URLs (English) before "
        "segmenting; default the server's (on). false: the text as written.",
    )
    callback_url: (
        Annotated[str, StringConstraints(min_length=1, max_length=2000), PRINTABLE] | None
    ) = Field(
        None,
        description="An http(s) URL that receives a signed webhook (Standard Webhooks) when "
        "the job ends: job.done, job.partially_failed, job.failed or job.cancelled. "
        "Default: the API key's callback URL, if it has one.",
        json_schema_extra={"format": "uri"},
    )
    lexicon: str | dict[str, str] | None = Field(
        None,
        description="Pronunciations applied to each chunk: the text of a lexicon file "
        "(`word = replacement`, `/regex/i = replacement`, `word = [[phonemes]]` lines) or "
        'a JSON map like {"Nguyen": "win", "/colou?r/i": "kuller"}.',
    )

    def overrides(self) -> dict[str, object]:
        """The per-job settings this request asks for (None: the server's)."""
        return {
            "output_format": self.format,
            "voice": self.voice,
            "chapter_files": self.chapter_files,
            "master_format": self.master,
            "subtitles": None if self.subtitles is None else ",".join(self.subtitles) or "none",
            "loudness_preset": self.loudness_preset,
            "normalize_text": self.normalize,
            "item_name_template": self.name_template,
            "catalogue_id_column": self.id_column,
            "catalogue_text_column": self.text_column,
            "catalogue_voice_column": self.voice_column,
            "keep_front_matter": self.keep_front_matter,
            "qa": self.qa,
        }

    @field_validator("lexicon", mode="wrap")
    @classmethod
    def _lexicon_is_text_or_a_map(
        cls, value: object, handler: Callable[[object], object]
    ) -> str | dict[str, str] | None:
        # One message naming `lexicon`, not one per member of the union.
        try:
            lexicon: str | dict[str, str] | None = handler(value)  # type: ignore[assignment]
        except ValidationError as exc:
            raise ValueError(
                'must be the text of a lexicon file or an object of "word": "replacement" strings'
            ) from exc
        if isinstance(lexicon, str) and (problem := control_character(lexicon)):
            raise ValueError(problem)
        for word, replacement in (lexicon or {}).items() if isinstance(lexicon, dict) else ():
            if problem := control_character(word) or control_character(replacement):
                raise ValueError(f"entry {word[:40]!r} {problem}")
        return lexicon

    @field_validator("subtitles")
    @classmethod
    def _each_timing_kind_once(cls, kinds: list[str] | None) -> list[str] | None:
        if kinds is None:
            return None
        repeated = sorted({kind for kind in kinds if kinds.count(kind) > 1})
        if repeated:
            raise ValueError(f"names {repeated[0]!r} more than once; list each kind once")
        return kinds

    @field_validator("name_template")
    @classmethod
    def _known_name_fields(cls, template: str | None) -> str | None:
        if template is not None:
            try:
                check_template(template)
            except InputError as exc:
                raise ValueError(exc.message) from exc
        return template

    @model_validator(mode="after")
    def _exactly_one_body(self) -> JobRequest:
        given = [name for name in ("text", "chapters", "items") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of text, chapters or items"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class ChunkCounts(BaseModel):
    total: int
    done: int
    failed: int
    pending: int
    leased: int
    cached: int = Field(description="Done chunks whose audio came from the shared cache.")


class ItemCounts(BaseModel):
    total: int
    done: int
    failed: int


class FailedChunk(BaseModel):
    seq: int
    text: str
    error: str | None


class JobOut(BaseModel):
    id: uuid.UUID
    status: str
    kind: str
    title: str
    engine: str
    voice: str
    format: str
    progress: float = Field(description="Share of chunks finished (done or failed), 0 to 1.")
    chunks: ChunkCounts
    items: ItemCounts
    audio_seconds: float
    error: str | None
    failed: list[FailedChunk] = Field(default_factory=list)
    created_at: datetime
    finished_at: datetime | None
    callback_url: str | None = Field(None, description="Where the job's webhook goes.")
    qa: QaOut | None = Field(None, description="QA while rendering; null for a job without.")


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_offset: int | None = Field(description="Pass as ?offset= for the next page.")


class OutputFile(BaseModel):
    name: str = Field(description="Path inside the job's output folder.")
    kind: FileKind
    url: str | None = Field(description="Presigned download URL; null while archived.")
    storage_class: str = Field(description="STANDARD, GLACIER_IR, GLACIER, DEEP_ARCHIVE...")
    state: Literal["ready", "archived", "restoring"] = Field(
        description="ready to download; archived (a restore is needed first); restoring "
        "(a restore is in progress)."
    )
    restored_until: str | None = Field(
        None, description="When a restored copy of an archived file expires."
    )


class Outputs(BaseModel):
    job_id: uuid.UUID
    status: str
    expires_in: int = Field(description="Seconds the URLs stay valid.")
    ready: bool = Field(description="Every file can be downloaded now.")
    message: str | None = Field(None, description="What to do when not every file is ready.")
    files: list[OutputFile]


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int | None = Field(
        None, ge=1, le=365, strict=True, description="How long restored copies last (days)."
    )
    tier: RestoreTier | None = Field(
        None, description="Restore speed (and price); default the server's."
    )


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(
        description='Each dependency: "ok", or "unreachable (ErrorClass)" (details are logged).'
    )


class ErrorDetail(BaseModel):
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
ERROR_MEANINGS: dict[int, str] = {
    401: "Missing, unknown or revoked API key, or an invalid token.",
    403: "The API key or token lacks the scope this route needs.",
    404: "No such job for this key.",
    409: "The job is not in a state that allows this.",
    413: "Request body over the size limit.",
    415: "The body is neither application/json nor multipart/form-data.",
    422: "Invalid request; `field` names the culprit.",
    429: "Rate limit reached; retry after Retry-After seconds.",
    503: "The job database or the broker is unreachable, or the API is busy (more reads "
    "at once than database connections); nothing was changed. Retry after Retry-After "
    "seconds.",
}


def error_responses(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the one error body;
    `described` gives a route's own wording, keyed `e409` and so on."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        response: dict[str, Any] = {
            "model": ErrorBody,
            "description": described.get(f"e{code}", ERROR_MEANINGS[code]),
        }
        if code in (429, 503):
            response["headers"] = _RETRY_AFTER
        out[code] = response
    return out
