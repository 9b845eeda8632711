"""The OpenAPI document is valid and complete (issue 21, defect 11): every `$ref` resolves
(`JobRequest` once did not), every route the app serves is in it with its bodies (JSON
and multipart), the status codes it answers, and the content types it really sends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from api.app import create_app
from api.requests import FORM_FIELDS
from pipeline.config import load_settings
from pipeline.state.db import create_db_engine, upgrade

HIDDEN = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


class NoBroker:
    def render(self, job_id: uuid.UUID, groups: Any) -> None:
        raise AssertionError("nothing is submitted here")

    def ping(self, timeout: float = 3.0) -> None:
        return None


@pytest.fixture(scope="module")
def app_and_document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    folder = tmp_path_factory.mktemp("schema")
    url = f"sqlite:///{folder / 'state.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = load_settings(engine="test-tone", data_dir=folder / "data", database_url=url)
    app = create_app(settings, NoBroker())
    with TestClient(app) as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        yield app, response.json()


@pytest.fixture
def document(app_and_document: tuple[Any, Any]) -> dict[str, Any]:
    return dict(app_and_document[1])


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    found = sorted(set(refs(document)))
    assert "#/components/schemas/JobRequest" in found
    missing = [ref for ref in found if not _resolves(document, ref)]
    assert missing == []


def _resolves(document: dict[str, Any], ref: str) -> bool:
    try:
        resolve(document, ref)
    except (KeyError, IndexError):
        return False
    return True


def test_every_route_is_documented_with_its_methods(
    app_and_document: tuple[Any, Any],
) -> None:
    app, document = app_and_document
    served: dict[str, set[str]] = {}
    for route in iter_route_contexts(app.routes):
        if route.path not in HIDDEN:
            served.setdefault(route.path, set()).update(m.lower() for m in route.methods)
    documented = {path: set(operations) for path, operations in document["paths"].items()}
    assert documented == served


def test_the_submit_bodies_are_complete(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    job = resolve(document, body["application/json"]["schema"]["$ref"])
    assert {"text", "chapters", "items", "lexicon", "name_template"} <= set(job["properties"])
    form = body["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert set(form["properties"]) == {"file", "cover", "subtitles", "lexicon", *FORM_FIELDS}
    assert form["properties"]["file"]["format"] == "binary"
    # text fields say what they refuse: control characters
    assert "\\x00" in job["properties"]["title"]["anyOf"][0]["pattern"]
    assert "\\x00" in form["properties"]["title"]["pattern"]


def test_status_codes_and_content_types(document: dict[str, Any]) -> None:
    paths = document["paths"]

    def codes(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert codes("/v1/jobs", "post") == {
        *("200", "201", "401", "403", "413", "415", "422", "429", "503")
    }
    assert codes("/v1/jobs", "get") == {"200", "401", "403", "422", "429", "503"}
    assert {"404", "409"} <= codes("/v1/jobs/{job_id}/cancel", "post")
    assert {"404", "409", "415"} <= codes("/v1/jobs/{job_id}/restore", "post")
    assert codes("/readyz", "get") == {"200", "503"}
    assert "/metrics" not in paths  # served on the metrics port (api.metrics), not here
    for status in ("200", "503"):
        ready = paths["/readyz"]["get"]["responses"][status]["content"]["application/json"]
        assert resolve(document, ready["schema"]["$ref"])["required"] == ["status", "checks"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/ErrorBody"), (method, path, status)


def test_numbers_and_headers_are_bounded(document: dict[str, Any]) -> None:
    listing = {p["name"]: p for p in document["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert listing["offset"]["schema"]["maximum"] < 2**63 - 100
    assert listing["limit"]["schema"]["maximum"] == 100
    submit = {p["name"]: p for p in document["paths"]["/v1/jobs"]["post"]["parameters"]}
    assert submit["Idempotency-Key"]["in"] == "header"
    assert submit["Idempotency-Key"]["schema"]["pattern"].startswith("^[!-~]")
    days = resolve(document, "#/components/schemas/RestoreRequest")["properties"]["days"]
    assert days["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 365}


def test_links_from_a_new_job_reach_its_operations(document: dict[str, Any]) -> None:
    operations = {
        op["operationId"]: (path, method)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    }
    responses = document["paths"]["/v1/jobs"]["post"]["responses"]
    for status in ("200", "201"):
        links = responses[status]["links"]
        assert {link["operationId"] for link in links.values()} == {
            "getJob",
            "cancelJob",
            "getOutputs",
            "restoreOutputs",
        }
        for link in links.values():
            path, _method = operations[link["operationId"]]
            assert "{job_id}" in path
            assert link["parameters"] == {"job_id": "$response.body#/id"}


def test_the_schema_is_served_with_the_same_content(
    app_and_document: tuple[Any, Any], tmp_path: Path
) -> None:
    app, document = app_and_document
    assert app.openapi() == document
