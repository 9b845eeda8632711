"""The submit body's read-along field, over QA's (JobRequest's bases, one concern per
module); api.schemas takes QA's job view from here too."""

from __future__ import annotations

from pydantic import Field

from api.qa_schemas import QaOut, QaRequest

__all__ = ["QaOut", "ReadAlongRequest"]

READ_ALONG_FIELD = (
    "Also write <name>.epub: the book's text with its audio inside, highlighted as it is "
    "spoken (EPUB 3 Media Overlays; word by word where QA timed the words), listed in the "
    "job's outputs as `read_along`. Books only: refused for a catalogue. Default the "
    "server's (VOICEBATCH_READ_ALONG)."
)


class ReadAlongRequest(QaRequest):
    """The read-along EPUB field of a submit (and QaRequest's `qa`)."""

    read_along: bool | None = Field(None, description=READ_ALONG_FIELD)
