"""`voicebatch render`: render a book or a catalogue in this process, and print what it made."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.context import cli_state
from cli.options import (
    BatchSizeOption,
    CoverOption,
    DataDirOption,
    EngineOption,
    IdColumnOption,
    NameTemplateOption,
    OutputDirOption,
    TextColumnOption,
    VoiceColumnOption,
)
from cli.output import err_console, reported_errors
from pipeline.audio.cover import document_cover, load_cover
from pipeline.audio.presets import mastering_options
from pipeline.config import LOUDNESS_PRESETS, OUTPUT_FORMATS, load_settings
from pipeline.errors import InputError
from pipeline.plan.prepare import check_inputs, check_output_dir, start_loading
from pipeline.qa.asr import check_model_dir

KeepFrontMatterOption = Annotated[
    bool | None,
    typer.Option(
        "--keep-front-matter/--skip-front-matter",
        envvar="VOICEBATCH_KEEP_FRONT_MATTER",
        show_envvar=True,
        help="EPUB: also read the cover, title page, copyright, contents, index... "
        "(default: skipped).",
        show_default=False,
    ),
]
ChapterFilesOption = Annotated[
    bool | None,
    typer.Option(
        "--chapter-files/--no-chapter-files",
        envvar="VOICEBATCH_CHAPTER_FILES",
        show_envvar=True,
        help="One file per chapter besides the book (default: on).",
        show_default=False,
    ),
]
MasterOption = Annotated[
    str | None,
    typer.Option(
        "--master",
        envvar="VOICEBATCH_MASTER_FORMAT",
        show_envvar=True,
        help="Also write a lossless master of every file under master/: wav or flac.",
    ),
]
SubtitlesOption = Annotated[
    str | None,
    typer.Option(
        "--subtitles",
        envvar="VOICEBATCH_SUBTITLES",
        show_envvar=True,
        help="Timing files beside each audio file: srt,vtt,json (default) or none.",
    ),
]
PresetOption = Annotated[
    str | None,
    typer.Option(
        "--loudness-preset",
        envvar="VOICEBATCH_LOUDNESS_PRESET",
        show_envvar=True,
        help=f"Master to a delivery spec: {', '.join(LOUDNESS_PRESETS)}.",
    ),
]
NormalizeOption = Annotated[
    bool | None,
    typer.Option(
        "--normalize/--no-normalize",
        envvar="VOICEBATCH_NORMALIZE_TEXT",
        show_envvar=True,
        help="Spell out numbers, dates, money, abbreviations, URLs (English; default: on). "
        "--no-normalize sends the text as written.",
        show_default=False,
    ),
]
LexiconOption = Annotated[
    Path | None,
    typer.Option(
        "--lexicon",
        envvar="VOICEBATCH_LEXICON",
        show_envvar=True,
        help="Pronunciation file: `word = replacement`, `/regex/i = replacement`, "
        "`word = [[phonemes]]` (piper) lines.",
        show_default=False,
    ),
]
ReadAlongOption = Annotated[
    bool | None,
    typer.Option(
        "--read-along/--no-read-along",
        envvar="VOICEBATCH_READ_ALONG",
        show_envvar=True,
        help="Also write <name>.epub: the book's text with its audio inside, highlighted "
        "as it is spoken (EPUB 3 Media Overlays; books only, not catalogues).",
        show_default=False,
    ),
]
QaOption = Annotated[
    bool | None,
    typer.Option(
        "--qa/--no-qa",
        envvar="VOICEBATCH_QA",
        show_envvar=True,
        help="Check each chunk with speech recognition as it is rendered; render a flagged "
        "one again with other seeds (VOICEBATCH_QA_RETRIES), keep the best take, and list "
        "those still flagged with their times. Needs --asr-model.",
        show_default=False,
    ),
]
RenderAsrModelOption = Annotated[
    Path | None,
    typer.Option(
        "--asr-model",
        envvar="VOICEBATCH_ASR_MODEL_DIR",
        show_envvar=True,
        help="--qa: folder with a CTranslate2 Whisper model (faster-whisper format).",
        show_default=False,
    ),
]


def render(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="Book to read (.txt, .md, .epub) or catalogue (.csv, .jsonl)",
            show_default=False,
        ),
    ],
    output: OutputDirOption = Path("out"),
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            envvar="VOICEBATCH_OUTPUT_FORMAT",
            show_envvar=True,
            help=f"One of {', '.join(OUTPUT_FORMATS)}.",
        ),
    ] = None,
    engine: EngineOption = None,
    voice: Annotated[
        str | None,
        typer.Option(
            envvar="VOICEBATCH_VOICE",
            show_envvar=True,
            help="Voice name or .onnx path (default: the engine's).",
        ),
    ] = None,
    batch_size: BatchSizeOption = None,
    data_dir: DataDirOption = None,
    cover: CoverOption = None,
    keep_front_matter: KeepFrontMatterOption = None,
    chapter_files: ChapterFilesOption = None,
    master: MasterOption = None,
    subtitles: SubtitlesOption = None,
    loudness_preset: PresetOption = None,
    normalize: NormalizeOption = None,
    lexicon: LexiconOption = None,
    id_column: IdColumnOption = None,
    text_column: TextColumnOption = None,
    voice_column: VoiceColumnOption = None,
    name_template: NameTemplateOption = None,
    read_along: ReadAlongOption = None,
    qa: QaOption = None,
    asr_model: RenderAsrModelOption = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Forget the saved job for this command; start over.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    stage_times: Annotated[
        Path | None,
        typer.Option(
            "--stage-times",
            help="Write where the time went (wall and CPU seconds per stage) to this JSON file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Render a book into one audio file per chapter, one for the whole book, timing files
    and manifest.json; or a catalogue into one file per row and items/summary.csv.

    Run the same command again after an interruption and it resumes where it stopped.
    """
    with reported_errors(cli_state(ctx).debug):
        settings = load_settings(
            output_format=fmt,
            engine=engine,
            voice=voice,
            batch_size=batch_size,
            data_dir=data_dir,
            keep_front_matter=keep_front_matter,
            chapter_files=chapter_files,
            master_format=master,
            subtitles=subtitles,
            loudness_preset=loudness_preset,
            normalize_text=normalize,
            lexicon=lexicon,
            catalogue_id_column=id_column,
            catalogue_text_column=text_column,
            catalogue_voice_column=voice_column,
            item_name_template=name_template,
            read_along=read_along,
            qa=qa,
            asr_model_dir=asr_model,
        )
        if settings.qa:  # a missing or wrong model folder fails now, in one line
            check_model_dir(settings.asr_model_dir)
        if stage_times is not None and not stage_times.expanduser().parent.is_dir():
            raise InputError(
                f"--stage-times: folder {stage_times.expanduser().parent} does not exist"
            )
        checked = check_inputs(source, settings)
        mastering_options(settings)  # a preset clashing with explicit targets fails now
        picture = load_cover(cover) if cover is not None else None
        check_output_dir(output)
        err_console.print(f"loading {settings.engine} voice...", highlight=False)
        # The engine is the longest step of start-up: it starts loading now, on its own
        # thread, while the database and assembly code are imported and the database opened.
        loading = start_loading(settings)
        from cli.render_run import run_render

        run_render(
            settings,
            checked,
            loading,
            output=output,
            fresh=fresh,
            quiet=quiet,
            cover=picture or document_cover(checked.document),
            stage_times=stage_times,
        )
