"""The API's schema offers exactly the choices the pipeline declares: the kinds of file
the assembler writes (pipeline/assemble/keys), the output and master formats, timing
files, loudness presets and restore tiers (pipeline/config)."""

from __future__ import annotations

from typing import get_args

from api.requests import JOB_BODY
from api.schemas import JobRequest, OutputFile, RestoreRequest
from pipeline.assemble.keys import FILE_KINDS
from pipeline.config import LOUDNESS_PRESETS, OUTPUT_FORMATS, RESTORE_TIERS, TIMING_FORMATS


def choices(model: type, field: str) -> set[str]:
    """The Literal values a pydantic field accepts (unwrapping Optional and list)."""
    found: set[str] = set()
    pending = [model.model_fields[field].annotation]  # type: ignore[attr-defined]
    while pending:
        annotation = pending.pop()
        for arg in get_args(annotation):
            if isinstance(arg, str):
                found.add(arg)
            elif arg is not type(None):
                pending.append(arg)
    return found


def test_output_file_kinds_match_the_assemblers() -> None:
    assert choices(OutputFile, "kind") == set(FILE_KINDS)


def test_job_request_offers_the_pipelines_choices() -> None:
    assert choices(JobRequest, "format") == set(OUTPUT_FORMATS)
    assert choices(JobRequest, "subtitles") == set(TIMING_FORMATS)
    assert choices(JobRequest, "loudness_preset") == set(LOUDNESS_PRESETS)
    assert choices(RestoreRequest, "tier") == set(RESTORE_TIERS)


def test_the_multipart_schema_offers_the_same_formats() -> None:
    body = JOB_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert body["format"]["enum"] == list(OUTPUT_FORMATS)
    assert body["loudness_preset"]["enum"] == list(LOUDNESS_PRESETS)
