"""The API's OpenAPI document: FastAPI's, completed with the request bodies that the
submit and restore handlers read themselves (a JSON body or a multipart upload; FastAPI
sees neither, so it never put `JobRequest` or `RestoreRequest` in the components that the
routes' `$ref`s point at: issue 21)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from api.schemas import JobRequest, RestoreRequest
from api.speech_schemas import SpeechBody

# The bodies the handlers parse themselves, referenced from `requests.JOB_BODY` and
# `requests.RESTORE_BODY`.
PARSED_BODIES: tuple[type[BaseModel], ...] = (JobRequest, RestoreRequest, SpeechBody)
REF = "#/components/schemas/{model}"


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (`app.openapi`): FastAPI's, which it makes once and
    keeps, with the bodies the handlers parse themselves added to its components."""
    document = FastAPI.openapi(app)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if not all(model.__name__ in schemas for model in PARSED_BODIES):
        for model in PARSED_BODIES:
            schema = model.model_json_schema(ref_template=REF, mode="validation")
            for name, part in schema.pop("$defs", {}).items():
                schemas.setdefault(name, part)
            schemas[model.__name__] = schema
        document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document
