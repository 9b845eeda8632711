"""`voicebatch inspect FILE`: what a render of FILE would read, skip and cost, as a dry
run (no job, no model, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.context import cli_state
from cli.options import (
    EngineOption,
    IdColumnOption,
    JsonOption,
    NameTemplateOption,
    TextColumnOption,
    VoiceColumnOption,
)
from cli.output import clock, console, reported_errors
from cli.render import KeepFrontMatterOption, LexiconOption, NormalizeOption
from pipeline.config import load_settings
from pipeline.plan.inspect import Inspection, inspect_source


def inspect(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="Book (.txt, .md, .epub) or catalogue (.csv, .jsonl).", show_default=False
        ),
    ],
    engine: EngineOption = None,
    keep_front_matter: KeepFrontMatterOption = None,
    normalize: NormalizeOption = None,
    lexicon: LexiconOption = None,
    id_column: IdColumnOption = None,
    text_column: TextColumnOption = None,
    voice_column: VoiceColumnOption = None,
    name_template: NameTemplateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Dry run: what a render of FILE would read and skip, and how long it would take.

    Prints the chapters and their word counts, what is skipped and why, the first
    sentences as they will be spoken, the number of chunks, and the estimated audio length
    and render time for the configured engine. Creates no job and loads no model."""
    with reported_errors(cli_state(ctx).debug):
        settings = load_settings(
            engine=engine,
            keep_front_matter=keep_front_matter,
            normalize_text=normalize,
            lexicon=lexicon,
            catalogue_id_column=id_column,
            catalogue_text_column=text_column,
            catalogue_voice_column=voice_column,
            item_name_template=name_template,
        )
        found = inspect_source(source, settings)
    if as_json:
        console.print_json(json.dumps(as_record(found)))
        return
    _print(found)


def as_record(found: Inspection) -> dict[str, Any]:
    document = found.document
    return {
        "file": str(found.path),
        "kind": document.kind,
        "title": document.title,
        "author": document.author,
        "engine": found.engine,
        "voice": found.voice,
        "chapters": [
            {"title": c.title, "words": c.words, "chunks": c.chunks, "seconds": round(c.seconds, 1)}
            for c in found.chapters
        ],
        "skipped": [
            {"title": s.title, "reason": s.reason, "words": s.words} for s in found.skipped
        ],
        "first_sentences": found.first_sentences,
        "chunks": found.chunks,
        "audio_seconds": round(found.audio_seconds, 1),
        "render_seconds": round(found.render_seconds, 1) if found.render_seconds else None,
        "render_speed_measured": found.pace.measured if found.pace else None,
        "qa_seconds": round(found.qa_seconds, 1) if found.qa_seconds is not None else None,
    }


def _print(found: Inspection) -> None:
    document = found.document
    by = f" by {document.author}" if document.author else ""
    console.print(f"[bold]{document.title}[/]{by} ({found.path}, {document.kind})", highlight=False)
    what = "item" if document.kind == "catalogue" else "chapter"
    table = Table(what, "words", "chunks", "audio")
    for chapter in found.chapters:
        table.add_row(
            chapter.title, str(chapter.words), str(chapter.chunks), clock(chapter.seconds)
        )
    console.print(table)
    if found.skipped:
        console.print("[bold]Skipped[/] (--keep-front-matter reads them):")
        for skipped in found.skipped:
            console.print(
                f"  {skipped.title} ({skipped.words} words): {skipped.reason}", highlight=False
            )
    console.print("[bold]First sentences, as spoken:[/]")
    for sentence in found.first_sentences:
        console.print(f"  {sentence}", highlight=False)
    pace = found.pace
    render = ""
    if found.render_seconds is not None and pace is not None:
        basis = (
            f"at {pace.realtime:g}x real time on a {pace.measured}"
            if pace.measured
            else (f"at the design target of {pace.realtime:g}x real time (not measured yet)")
        )
        render = f"; render about {clock(found.render_seconds)} with {found.engine} {basis}"
    if found.qa_seconds is not None:
        render += f"; QA adds about {clock(found.qa_seconds)} on the CPU"
    console.print(
        f"{len(found.chapters)} {what}s, {found.chunks} chunks, about "
        f"{clock(found.audio_seconds)} of audio{render}. No job was created.",
        highlight=False,
    )
