"""`voicebatch storage lifecycle apply|show`: the bucket's lifecycle rules from settings."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.output import console, reported_errors
from pipeline.config import load_settings
from pipeline.storage.lifecycle import RULE_PREFIX, apply_rules, describe, read_rules, s3_store

storage_app = typer.Typer(help="Object storage administration.", no_args_is_help=True)
lifecycle_app = typer.Typer(
    help="Bucket lifecycle rules: expire chunks, archive finished audio, abort stale uploads.",
    no_args_is_help=True,
)
storage_app.add_typer(lifecycle_app, name="lifecycle")

AsJson = Annotated[bool, typer.Option("--json", help="The rules as S3 returns them (JSON).")]


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


def register(app: typer.Typer, state: dict[str, Any]) -> None:
    app.add_typer(storage_app, name="storage")

    @lifecycle_app.command("apply")
    def apply(as_json: AsJson = False) -> None:
        """Write voicebatch's rules to the bucket (VOICEBATCH_STORAGE_URL), keeping the
        bucket's other rules; then print every rule the bucket now has."""
        with reported_errors(state["debug"]):
            settings = load_settings()
            s3, rules = apply_rules(settings)
        if not as_json:
            console.print(f"lifecycle rules of s3://{s3.bucket} written:", highlight=False)
        _print(rules, as_json, s3.bucket)

    @lifecycle_app.command("show")
    def show(as_json: AsJson = False) -> None:
        """Print the bucket's lifecycle rules."""
        with reported_errors(state["debug"]):
            s3 = s3_store(load_settings())
            rules = read_rules(s3)
        _print(rules, as_json, s3.bucket)
