"""`voicebatch keys create --scope` and the audit lines of key changes (issue 20)."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from cli.app import app


def _audit(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_keys_get_scopes_at_creation_and_key_changes_are_audited() -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "ci", "--scope", "jobs:read,speech"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    [line] = _audit(made.stderr)
    assert line["event"] == "key_created" and line["scopes"] == ["jobs:read", "speech"]
    assert line["prefix"] == key[:11] and key not in made.stderr
    default = runner.invoke(app, ["keys", "create", "plain"])
    assert _audit(default.stderr)[0]["scopes"] == ["jobs:write", "jobs:read", "speech"]
    listed = runner.invoke(app, ["keys", "list"])
    assert "scopes" in listed.stdout and "speech" in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", "ci"])
    assert revoked.exit_code == 0, revoked.output
    assert _audit(revoked.stderr)[0] | {"key": None} == {
        "event": "key_revoked",
        "key": None,
        "prefix": key[:11],
        "name": "ci",
    }


def test_an_unknown_scope_is_one_line_and_creates_nothing() -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["keys", "create", "typo", "--scope", "jobs:delete"])
    assert refused.exit_code == 2, refused.output
    assert "unknown scope 'jobs:delete'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "typo" not in runner.invoke(app, ["keys", "list"]).stdout
