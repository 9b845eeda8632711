"""`voicebatch qa OUT_DIR`: transcribe a rendered folder and flag the chunks that were not
said as written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.context import cli_state
from cli.options import JsonOption
from cli.output import clock, console, err_console, reported_errors
from pipeline.config import load_settings
from pipeline.errors import InputError
from pipeline.qa.asr import load_recogniser
from pipeline.qa.report import QaReport, load_manifest, record, run_qa
from pipeline.storage.local import LocalObjectStore

AsrModelOption = Annotated[
    Path | None,
    typer.Option(
        "--asr-model",
        envvar="VOICEBATCH_ASR_MODEL_DIR",
        show_envvar=True,
        help="Folder with a CTranslate2 Whisper model (faster-whisper format).",
    ),
]


def qa(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="An output folder (it has a manifest.json).", show_default=False)
    ],
    asr_model: AsrModelOption = None,
    word_vtt: Annotated[
        bool, typer.Option("--word-vtt", help="Also write <file>.words.vtt: a cue per word.")
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every chunk, not only the flagged ones.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check rendered speech with speech recognition, chunk by chunk.

    Flags missing, cut-off, repeated or invented words, silence and noise. Writes qa.json and the word times (into the timing JSON files), and a summary into
    manifest.json. Exit code 0 when no chunk is flagged, 1 when any is.
    """
    with reported_errors(cli_state(ctx).debug):
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder")
        store = LocalObjectStore(folder)
        load_manifest(store, str(folder))  # a folder without one fails before the model loads
        settings = load_settings(**({"asr_model_dir": asr_model} if asr_model else {}))
        recogniser = load_recogniser(settings.asr_model_dir)
        with err_console.status("transcribing...") as status:
            report = run_qa(
                store,
                recogniser,
                where=str(folder),
                progress=lambda target: status.update(f"transcribing {target.file}"),
            )
        record(store, report, word_vtt=word_vtt)
    if as_json:
        console.print_json(
            json.dumps(
                report.to_json()
                | {"chunks": [c for c in report.to_json()["chunks"] if show_all or c["flags"]]}
            )
        )
    else:
        _print_table(report, show_all)
    if report.flagged:
        raise typer.Exit(1)


def _print_table(report: QaReport, show_all: bool) -> None:
    table = Table()
    table.add_column("file", no_wrap=True, overflow="ellipsis", max_width=28)
    for name in ("chunk", "start", "errors"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("flag", no_wrap=True)
    table.add_column("text", max_width=48, overflow="fold")
    for result in report.files:
        for check in result.checks:
            if check.flags or show_all:
                table.add_row(
                    result.target.file.rsplit("/", 1)[-1],
                    str(check.index),
                    clock(check.start),
                    f"{check.error_rate:.0%}",
                    ", ".join(check.flags) or "ok",
                    check.text if len(check.text) <= 60 else check.text[:59] + "…",
                )
    summary = report.summary()
    if table.row_count:
        console.print(table)
    console.print(
        f"{summary['chunks']} chunks in {summary['files']} files, "
        f"{summary['audio_seconds'] / 60:.1f} min of audio checked in {summary['seconds']:.1f} s: "
        + (
            f"[bold red]{summary['flagged']} flagged[/]"
            if summary["flagged"]
            else "[green]none flagged[/]"
        ),
        highlight=False,
    )
