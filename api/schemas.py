"""Request and response bodies of the submit API (they are its OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.assemble.keys import FileKind
from pipeline.config import LoudnessPreset, MasterFormat, OutputFormat, RestoreTier, TimingFormat

# The choices the pipeline declares, so the schema offers exactly what a job can be.
Format = OutputFormat
Master = MasterFormat
Timing = TimingFormat
Preset = LoudnessPreset


class ChapterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=1000, description="Read aloud as its heading.")
    text: str = Field(min_length=1, description="Paragraphs separated by blank lines.")


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, description="Names the item's output file.")
    text: str = Field(min_length=1, max_length=20_000)
    voice: str | None = Field(
        None, max_length=1000, description="This item's own voice; default the job's."
    )


class JobRequest(BaseModel):
    """Exactly one of `text` (a book as plain text), `chapters` or `items` (a catalogue)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=500, description="Default: 'Untitled'.")
    text: str | None = Field(None, min_length=1)
    chapters: list[ChapterIn] | None = Field(None, min_length=1, max_length=10_000)
    items: list[ItemIn] | None = Field(None, min_length=1, max_length=100_000)
    format: Format | None = Field(None, description="Output format; default the server's.")
    voice: str | None = Field(
        None, max_length=200, description="A voice name the server's engine knows."
    )
    chapter_files: bool | None = Field(
        None, description="One file per chapter besides the book; default the server's (on)."
    )
    master: Master | None = Field(
        None, description="Also a lossless master of every file under master/."
    )
    subtitles: list[Timing] | None = Field(
        None, description="Timing files beside each audio file; [] for none."
    )
    loudness_preset: Preset | None = Field(
        None, description="Master every file to acx, podcast or broadcast."
    )
    name_template: str | None = Field(
        None,
        max_length=500,
        description="Catalogues: item file names under items/, from {id} {slug} {index} "
        "{ext}; default the server's ({id}.{ext}).",
    )
    id_column: str | None = Field(
        None, min_length=1, max_length=200, description="Uploaded catalogues: the id column."
    )
    text_column: str | None = Field(
        None, min_length=1, max_length=200, description="Uploaded catalogues: the text column."
    )
    voice_column: str | None = Field(
        None, min_length=1, max_length=200, description="Uploaded catalogues: the voice column."
    )
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
        }

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
    days: int | None = Field(None, ge=1, le=365, description="How long restored copies last.")
    tier: RestoreTier | None = Field(
        None, description="Restore speed (and price); default the server's."
    )


class ErrorDetail(BaseModel):
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
