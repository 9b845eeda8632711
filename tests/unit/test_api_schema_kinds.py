"""The API's output file kinds are the kinds the assembler writes (pipeline/assemble/keys)."""

from __future__ import annotations

from typing import get_args

from api.schemas import OutputFile
from pipeline.assemble.keys import FILE_KINDS


def test_output_file_kinds_match_the_assemblers() -> None:
    kinds = get_args(OutputFile.model_fields["kind"].annotation)
    assert sorted(kinds) == sorted(FILE_KINDS)
