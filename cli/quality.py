"""`voicebatch check FILE --preset acx`: measure a finished file against a loudness spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.context import cli_state
from cli.options import JsonOption
from cli.output import console, reported_errors
from pipeline.audio.measure import measure_file, report
from pipeline.audio.presets import PRESETS, preset
from pipeline.audio.probe import probe

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "info": "cyan"}


def check(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="Audio file to measure (any format).", show_default=False)
    ],
    spec: Annotated[
        str,
        typer.Option(
            "--preset", "-p", help=f"Loudness spec: {', '.join(PRESETS)}.", show_default=True
        ),
    ] = "acx",
    as_json: JsonOption = False,
) -> None:
    """Measure a file against a loudness preset: pass or fail per criterion.

    Exit code 0 when every criterion passes, 1 when any fails.
    """
    with reported_errors(cli_state(ctx).debug):
        wanted = preset(spec)
        result = report(measure_file(file), wanted, probe(file))
    if as_json:
        console.print_json(json.dumps(result))
    else:
        m = result["measurement"]
        console.print(
            f"{file}: {m['duration']:.1f} s, {m['sample_rate']} Hz, {m['channels']} "
            f"channel{'s' if m['channels'] > 1 else ''}; {wanted.description}",
            highlight=False,
        )
        table = Table("criterion", "requirement", "measured", "result")
        for criterion in result["criteria"]:
            verdict = criterion["verdict"]
            table.add_row(
                criterion["name"],
                criterion["requirement"],
                criterion["measured"],
                f"[{VERDICT_STYLE[verdict]}]{verdict.upper()}[/]",
            )
        console.print(table)
        console.print(
            "[green]passes[/] " + wanted.name
            if result["passed"]
            else "[bold red]fails[/] " + wanted.name,
            highlight=False,
        )
    if not result["passed"]:
        raise typer.Exit(1)
