"""Dependency floors that code relies on (issue 16.9)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import botocore.session
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return {Requirement(line).name: Requirement(line) for line in project["dependencies"]}


def test_the_s3_client_floor_admits_only_versions_with_conditional_writes() -> None:
    """Write-once chunks and outputs send PutObject with IfNoneMatch: botocore 1.35.0 and
    1.35.1 lack that parameter, so every chunk store would fail on them."""
    required = requirements()
    for name in ("boto3", "botocore"):
        assert name in required, f"{name} is not a direct dependency"
        allowed = required[name].specifier
        assert not allowed.contains("1.35.1"), f"{name} admits 1.35.1"
        assert allowed.contains("1.35.2")
    # and the installed botocore does take it
    model = botocore.session.get_session().get_service_model("s3")
    assert "IfNoneMatch" in model.operation_model("PutObject").input_shape.members
