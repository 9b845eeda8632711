"""The OpenAPI schema of QA while rendering: the submit field, and what a job shows."""

from __future__ import annotations

from pydantic import BaseModel, Field

QA_FIELD = (
    "QA while rendering: each chunk checked with speech recognition as it is rendered, a "
    "flagged one rendered again with other seeds (the best take kept), and those still "
    "flagged listed in the job's `qa` with their times; default the server's "
    "(VOICEBATCH_QA). Needs the server's VOICEBATCH_ASR_MODEL_DIR."
)


class QaChunk(BaseModel):
    """A chunk QA while rendering still flags after every take: listen to it."""

    text: str
    flags: list[str] = Field(
        description="silence, noise, cut_off, missing_words, repeated_words, invented_words "
        "or unintelligible."
    )
    error_rate: float = Field(description="Word errors per word of the text, of the kept take.")
    takes: int = Field(description="How many takes were rendered; the best one was kept.")
    file: str | None = Field(None, description="Its file in the job's folder, once assembled.")
    start: float | None = Field(None, description="Seconds into its file, once assembled.")
    end: float | None = None
    book_start: float | None = Field(None, description="Seconds into the book file (books).")
    book_end: float | None = None
    seq: int | None = Field(None, description="Its place in the job, before assembly.")


class QaOut(BaseModel):
    """QA while rendering: counts, and the chunks still flagged with their times."""

    chunks: int = Field(description="Chunks checked.")
    flagged: int = Field(description="Chunks still flagged after every take.")
    retaken: int = Field(description="Chunks rendered more than once.")
    flagged_chunks: list[QaChunk] = Field(default_factory=list)
    checked_at: str | None = Field(
        None,
        description="When the results went into the job's files (qa.json, manifest, timing "
        "files); null before: the counts so far, flagged chunks without times.",
    )


class QaRequest(BaseModel):
    """The submit body's QA field (JobRequest's base: one concern per module)."""

    qa: bool | None = Field(None, description=QA_FIELD)
