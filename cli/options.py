"""Options and arguments that several commands take, each defined once as an Annotated alias."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.engines import ENGINES

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="VOICEBATCH_DATA_DIR",
        show_envvar=True,
        help="Folder for the job database and chunk cache.",
    ),
]

# A voicebatch API server, for the client commands and `jobs`/`status --server`.
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="VOICEBATCH_API_URL",
        show_envvar=True,
        help="API URL, like http://host:8000.",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="VOICEBATCH_API_KEY", show_envvar=True, help="API key."),
]
JobArgument = Annotated[str, typer.Argument(help="Job id.", show_default=False)]

# How a catalogue (.csv/.jsonl) is read and its files named: `render` and `submit`.
IdColumnOption = Annotated[
    str | None,
    typer.Option(
        "--id-column",
        envvar="VOICEBATCH_CATALOGUE_ID_COLUMN",
        show_envvar=True,
        help="Catalogues (.csv/.jsonl): the column naming each item (default id).",
    ),
]
TextColumnOption = Annotated[
    str | None,
    typer.Option(
        "--text-column",
        envvar="VOICEBATCH_CATALOGUE_TEXT_COLUMN",
        show_envvar=True,
        help="Catalogues: the column with the text to speak (default text).",
    ),
]
VoiceColumnOption = Annotated[
    str | None,
    typer.Option(
        "--voice-column",
        envvar="VOICEBATCH_CATALOGUE_VOICE_COLUMN",
        show_envvar=True,
        help="Catalogues: an optional column with a row's own voice (default voice).",
    ),
]
NameTemplateOption = Annotated[
    str | None,
    typer.Option(
        "--name-template",
        envvar="VOICEBATCH_ITEM_NAME_TEMPLATE",
        show_envvar=True,
        help="Catalogues: item file names under items/, from {id} {slug} {index} {ext} "
        "(default {id}.{ext}).",
    ),
]

# Machine-readable output: `submit`, `jobs`, `status`, `check`, `storage lifecycle apply|show`.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

# Where the files go: `render` writes them there, `download` fetches them there.
OutputDirOption = Annotated[Path, typer.Option("--output", "-o", help="Folder for the files.")]

# `render` and `submit`. The other output choices they share (--format, --master,
# --subtitles, --loudness-preset, --normalize, --lexicon, --chapter-files,
# --keep-front-matter) stay in each module: `render` reads them from VOICEBATCH_* variables,
# `submit` must not (left out, the server's settings apply), so they differ in env var.
CoverOption = Annotated[
    Path | None,
    typer.Option(
        "--cover",
        help="Cover image (JPEG or PNG) for the files' picture tags; default: the book's own.",
        show_default=False,
    ),
]
# `submit`'s (render's own reads VOICEBATCH_READ_ALONG; left out here, the server's applies).
SubmitReadAlongOption = Annotated[
    bool | None,
    typer.Option(
        "--read-along/--no-read-along",
        help="Also <name>.epub: the book's text with its audio inside, highlighted as it is "
        "spoken (EPUB 3 Media Overlays; books only; default: the server's).",
        show_default=False,
    ),
]

# The engine process: `render` and `worker`.
EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        envvar="VOICEBATCH_ENGINE",
        show_envvar=True,
        help=f"One of {', '.join(sorted(ENGINES))} (default piper).",
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        envvar="VOICEBATCH_BATCH_SIZE",
        show_envvar=True,
        help="Most chunks the engine renders in one batch.",
    ),
]
