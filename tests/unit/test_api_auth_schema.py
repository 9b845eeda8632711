"""The OpenAPI document names both ways to authenticate (issue 20): API keys and JWTs,
as alternatives on every /v1 route, with the 403 a missing scope gets; and the pieces
of the auth and readiness code that need no services."""

from __future__ import annotations

from typing import Any

import pytest

from api.readiness import ProbeCache
from api.tokens import looks_like_jwt
from pipeline.errors import FieldError
from pipeline.state.keys import check_scopes, grants
from tests.unit.test_api_schema_document import app_and_document, document  # noqa: F401


def test_security_schemes_are_api_keys_and_jwts(document: dict[str, Any]) -> None:  # noqa: F811
    schemes = document["components"]["securitySchemes"]
    for name in ("apiKey", "jwt"):
        assert (schemes[name]["type"], schemes[name]["scheme"]) == ("http", "bearer")
    assert schemes["jwt"]["bearerFormat"] == "JWT"
    assert "jobs:write" in schemes["jwt"]["description"]
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            # Alternatives, each naming the scope the route needs (OpenAPI 3.1 roles).
            # The OpenAI-compatible speech routes need `speech`, whatever the method.
            if path in {"/v1/audio/speech", "/v1/audio/voices", "/v1/models"}:
                scope = "speech"
            else:
                scope = "jobs:read" if method == "get" else "jobs:write"
            assert operation["security"] == [{"apiKey": [scope]}, {"jwt": [scope]}], path
            assert "403" in operation["responses"], (method, path)


def test_scopes_are_checked_and_admin_holds_them_all() -> None:
    assert check_scopes(["speech", "jobs:read", "speech"]) == ("jobs:read", "speech")
    with pytest.raises(FieldError, match="unknown scope 'jobs:delete'"):
        check_scopes(["jobs:delete"])
    with pytest.raises(FieldError, match="at least one scope"):
        check_scopes([" "])
    assert grants({"admin"}, "jobs:write") and grants({"jobs:write"}, "jobs:write")
    assert not grants({"jobs:read"}, "jobs:write")


def test_api_keys_are_told_from_tokens() -> None:
    assert looks_like_jwt("eyJh.eyJz.c2ln")
    assert not looks_like_jwt("vb_abc.def.ghi") and not looks_like_jwt("vb_abcdef")


def test_probe_results_are_kept_a_few_seconds() -> None:
    now = [100.0]
    cache = ProbeCache(seconds=5.0, clock=lambda: now[0])
    probes: list[dict[str, str]] = [{"db": "ok"}, {"db": "unreachable (X)"}, {"db": "ok"}]
    calls = iter(probes)
    assert cache.checks(lambda: next(calls)) == {"db": "ok"}
    now[0] += 4.9
    assert cache.checks(lambda: next(calls)) == {"db": "ok"}  # kept
    now[0] += 0.2
    assert cache.checks(lambda: next(calls)) == {"db": "unreachable (X)"}
    now[0] += 1.0  # a failure is kept one second only
    assert cache.checks(lambda: next(calls)) == {"db": "ok"}
