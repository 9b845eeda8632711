"""Schemas for Kubernetes manifests, offline: the core API's (kubernetes-validate ships
them, per release) and the CRDs' of the operators we target (KEDA, Prometheus Operator),
read from ../shared/schemas beside the project, never copied into it. A test that needs
them skips on a laptop without them and fails when CI is set."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import IN_CI

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT.parent / "shared" / "schemas"
KUBERNETES_VERSION = "1.30.0"


def _missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _strict(schema: Any) -> Any:
    """The CRD schema as the API server's strict field validation reads it: an object
    with declared properties takes no others (the server would reject, or prune, them)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
    return out


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            key = (f"{group}/{version['name']}", kind)
            schemas[key] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def crd_validator(doc: dict[str, Any]) -> Any:
    """A JSON-schema validator for `doc`, a custom resource, from its CRD."""
    try:
        import jsonschema
    except ImportError:
        _missing("jsonschema not installed: pip install -e '.[dev]'")
    if not CRD_DIR.is_dir():
        _missing(f"{CRD_DIR} not found: the CRD schemas lie beside the project")
    schema = _crd_schemas().get((doc["apiVersion"], doc["kind"]))
    assert schema is not None, f"no CRD schema in {CRD_DIR} for {doc['apiVersion']} {doc['kind']}"
    return jsonschema.Draft7Validator(schema)


def validate_core(doc: dict[str, Any], where: str) -> None:
    """AssertionError naming `where` unless `doc` is valid for Kubernetes 1.30, unknown
    fields included (the strict schemas)."""
    try:
        import kubernetes_validate
    except ImportError:
        _missing("kubernetes-validate not installed: pip install -e '.[dev]'")
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(part) for part in exc.path)
        raise AssertionError(f"{where}: {path}: {exc.message}") from exc
