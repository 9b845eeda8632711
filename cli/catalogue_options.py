"""Options that say how a catalogue (.csv/.jsonl) is read and its files named; shared
by `render` and `submit`."""

from __future__ import annotations

from typing import Annotated

import typer

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
