"""`voicebatch storage lifecycle apply|show`: the bucket's lifecycle rules from settings."""

from __future__ import annotations

import json
from typing import Any

import typer

from cli.context import cli_state
from cli.options import JsonOption
from cli.output import console, reported_errors
from pipeline.config import load_settings
from pipeline.storage.lifecycle import RULE_PREFIX, apply_rules, describe, read_rules, s3_store


def _print(rules: list[dict[str, Any]], as_json: bool, bucket: str) -> None:
    if as_json:
        console.print_json(json.dumps(rules, default=str))
        return
    if not rules:
        console.print(f"bucket {bucket} has no lifecycle rules", highlight=False)
        return
    for rule in rules:
        mark = "" if str(rule.get("ID", "")).startswith(RULE_PREFIX) else "  (not voicebatch's)"
        console.print(describe(rule) + mark, highlight=False)


def lifecycle_apply(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Write voicebatch's rules to the bucket (VOICEBATCH_STORAGE_URL), keeping the
    bucket's other rules; then print every rule the bucket now has."""
    with reported_errors(cli_state(ctx).debug):
        settings = load_settings()
        s3, rules = apply_rules(settings)
    if not as_json:
        console.print(f"lifecycle rules of s3://{s3.bucket} written:", highlight=False)
    _print(rules, as_json, s3.bucket)


def lifecycle_show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print the bucket's lifecycle rules."""
    with reported_errors(cli_state(ctx).debug):
        s3 = s3_store(load_settings())
        rules = read_rules(s3)
    _print(rules, as_json, s3.bucket)
