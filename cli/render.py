"""`voicebatch render`: render a book or a catalogue in this process, and print what it made."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated, Any

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
from cli.output import clock, console, err_console, render_progress, reported_errors
from pipeline.assemble.keys import MANIFEST_KEY, describe_key
from pipeline.assemble.manifest import is_catalogue, loudness_measure, read_manifest
from pipeline.audio.cover import document_cover, load_cover
from pipeline.audio.presets import mastering_options
from pipeline.config import LOUDNESS_PRESETS, OUTPUT_FORMATS, load_settings
from pipeline.errors import InputError
from pipeline.plan.jobs import PlannedJob
from pipeline.runner import LocalRuntime, RenderOutcome, check_inputs, check_output_dir, render_file
from pipeline.stages import CLOCK
from pipeline.storage.local import LocalObjectStore

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
        )
        if stage_times is not None and not stage_times.expanduser().parent.is_dir():
            raise InputError(
                f"--stage-times: folder {stage_times.expanduser().parent} does not exist"
            )
        checked = check_inputs(source, settings)
        mastering_options(settings)  # a preset clashing with explicit targets fails now
        picture = load_cover(cover) if cover is not None else None
        check_output_dir(output)
        runtime = LocalRuntime.open(settings)
        err_console.print(f"loading {settings.engine} voice...", highlight=False)

        def planned(job: PlannedJob) -> None:
            verb = "resuming" if job.resumed else "created"
            err_console.print(
                f"{verb} job [bold]{job.job_id}[/] ({job.chunks_total} chunks)", highlight=False
            )

        stopped: dict[str, int] = {}

        def stop(signum: int, _frame: object) -> None:
            # SIGTERM and SIGHUP stop a render like Ctrl-C: leases are handed back on the
            # way out, so the next run resumes at once instead of waiting for them to expire.
            stopped["signal"] = signum
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        try:
            with render_progress(not quiet) as progress:
                outcome = render_file(
                    runtime,
                    checked,
                    output_dir=output,
                    fresh=fresh,
                    progress=progress,
                    on_planned=planned,
                    cover=picture or document_cover(checked.document),
                )
        except KeyboardInterrupt:
            err_console.print(
                "\n[yellow]interrupted[/]: progress is saved; run the same command to resume"
            )
            raise typer.Exit(128 + stopped.get("signal", signal.SIGINT)) from None
        if stage_times is not None:
            write_stage_times(stage_times)
    print_outcome(outcome)


def write_stage_times(path: Path) -> None:
    """The stage clock's totals and marks as JSON (see pipeline.stages)."""
    CLOCK.mark("render_done")
    report = json.dumps(CLOCK.report(), indent=1)
    try:
        path.expanduser().write_text(report + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write stage times to {path}: {exc.strerror}") from exc


def print_outcome(outcome: RenderOutcome) -> None:
    """Print what a render did and wrote; exit 1 when any chunk failed."""
    stats, assembly = outcome.stats, outcome.assembly
    seconds = outcome.seconds
    speed = (
        stats.audio_seconds / seconds["render"]
        if seconds["render"] > 0 and stats.audio_seconds
        else 0.0
    )
    console.print(
        f"rendered {stats.rendered} chunks, {stats.cached} from cache, {stats.failed} failed "
        f"in {seconds['total']:.1f} s" + (f" ({speed:.1f}x real time)" if speed else ""),
        highlight=False,
    )
    if assembly is None:
        console.print(
            f"job {outcome.job.job_id} was already finished; outputs in {outcome.output_dir}"
        )
        return
    loud = assembly.loudness
    manifest = _manifest(outcome.output_dir)
    rms = ""
    if loud is not None and loud.rms_db is not None and loudness_measure(manifest) == "rms":
        rms = f", RMS {loud.rms_db:.1f} dB"  # what ACX measures
    units = "items" if is_catalogue(manifest) else "chapters"
    console.print(
        f"job {outcome.job.job_id} {assembly.status}: {assembly.items} {units}, "
        f"{clock(assembly.duration)} of audio"
        + (
            f", {loud.output_lufs:.1f} LUFS{rms}, true peak {loud.true_peak_dbtp:.1f} dBTP"
            if loud
            else ""
        ),
        highlight=False,
    )
    for key in [assembly.book_key, *assembly.chapter_keys, MANIFEST_KEY]:
        if key:
            console.print(f"  {outcome.output_dir / key}", highlight=False)
    if assembly.other_files:
        kinds = sorted({describe_key(key) for key in assembly.other_files})
        console.print(
            f"  and {len(assembly.other_files)} more: {', '.join(kinds)}", highlight=False
        )
    for failed in assembly.failed_chunks:
        err_console.print(
            f"[red]failed[/] chunk {failed['seq']} ({failed['item']}): {failed['error']}",
            highlight=False,
        )
    if assembly.failed_chunks:
        raise typer.Exit(1)


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        return read_manifest(LocalObjectStore(folder)) or {}
    except OSError:  # a folder that cannot be read
        return {}
