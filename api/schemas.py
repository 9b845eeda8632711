"""Request and response bodies of the submit API (they are its OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Format = Literal["wav", "flac", "mp3", "opus"]


class ChapterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=1000, description="Read aloud as its heading.")
    text: str = Field(min_length=1, description="Paragraphs separated by blank lines.")


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, description="Names the item's output file.")
    text: str = Field(min_length=1, max_length=20_000)


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
    kind: Literal["book", "chapter", "item", "manifest"]
    url: str = Field(description="Presigned download URL.")


class Outputs(BaseModel):
    job_id: uuid.UUID
    status: str
    expires_in: int = Field(description="Seconds the URLs stay valid.")
    files: list[OutputFile]


class ErrorDetail(BaseModel):
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
