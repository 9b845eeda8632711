"""Client commands: submit, watch, download, restore, cancel; the remote side of jobs/status."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.client import ApiClient, safe_output_path
from cli.context import cli_state
from cli.options import (
    ApiKeyOption,
    CoverOption,
    IdColumnOption,
    JobArgument,
    JsonOption,
    NameTemplateOption,
    OutputDirOption,
    ServerOption,
    SubmitReadAlongOption,
    TextColumnOption,
    VoiceColumnOption,
)
from cli.output import clock, console, err_console, print_jobs, reported_errors
from cli.qa_listing import print_job_qa
from pipeline.assemble.read_along import catalogue_refusal
from pipeline.audio.cover import load_cover
from pipeline.config import OUTPUT_FORMATS, RESTORE_TIERS, load_settings
from pipeline.errors import InputError, RetryableError
from pipeline.ingest.catalogue import CATALOGUE_READERS
from pipeline.plan.prepare import check_output_dir
from pipeline.text.lexicon import load_lexicon

STATES = ("ready", "restoring", "archived")


class ArchivedError(InputError):
    """The job's files are archived; restore them first."""

    exit_code = 5


FINAL = {"done", "partially_failed", "failed", "cancelled"}


def client_for(server: str | None, api_key: str | None) -> ApiClient:
    """A client for the server and key given, or else VOICEBATCH_API_URL/VOICEBATCH_API_KEY."""
    settings = load_settings(api_url=server, api_key=api_key)
    if not settings.api_url:
        raise InputError("no API server: pass --server or set VOICEBATCH_API_URL")
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return ApiClient(settings.api_url, key)


def print_job(job: dict[str, Any]) -> None:
    """Print a server's job (as GET /v1/jobs/{id} returns it), one field a line."""
    chunks, items = job["chunks"], job["items"]
    for key in ("id", "status", "kind", "title", "engine", "voice", "format"):
        console.print(f"{key:>9}: {job[key]}", highlight=False)
    console.print(
        f"{'chunks':>9}: {chunks['done']}/{chunks['total']} done ({chunks['cached']} from cache), "
        f"{chunks['failed']} failed, {chunks['pending'] + chunks['leased']} to go "
        f"({job['progress']:.0%})",
        highlight=False,
    )
    console.print(
        f"{'items':>9}: {items['done']}/{items['total']} assembled, {items['failed']} failed",
        highlight=False,
    )
    console.print(f"{'audio':>9}: {clock(job['audio_seconds'])}", highlight=False)
    if job.get("error"):
        console.print(f"{'error':>9}: {job['error']}", highlight=False)
    for failed in job.get("failed", []):
        console.print(
            f"  chunk {failed['seq']}: {failed['error']} -- {failed['text'][:80]!r}",
            highlight=False,
        )
    if job.get("qa"):
        print_job_qa(job["qa"])


def follow(
    client: ApiClient, job_id: str, *, poll: float = 1.0, show: bool = True
) -> dict[str, Any]:
    """Poll the job until it is final, with a progress bar; returns its last state."""
    job = client.job(job_id)
    if not show:
        while job["status"] not in FINAL:
            time.sleep(poll)
            job = client.job(job_id)
        return job
    progress = Progress(
        TextColumn("[bold]{task.fields[status]:<16}"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.total} chunks"),
        TextColumn("{task.fields[cached]} cached"),
        TextColumn("{task.fields[audio]:>8} audio"),
        TimeElapsedColumn(),
        console=err_console,
    )
    with progress:
        task = progress.add_task("job", total=job["chunks"]["total"], status="", cached=0, audio="")
        while True:
            chunks = job["chunks"]
            progress.update(
                task,
                completed=chunks["done"] + chunks["failed"],
                status=job["status"],
                cached=chunks["cached"],
                audio=clock(job["audio_seconds"]),
            )
            if job["status"] in FINAL:
                return job
            time.sleep(poll)
            job = client.job(job_id)


def _exit_for(job: dict[str, Any]) -> None:
    if job["status"] != "done":
        raise typer.Exit(1)


def submit(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="Book (.txt, .md, .epub) or catalogue (.csv, .jsonl) to render",
            show_default=False,
        ),
    ],
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    title: Annotated[str | None, typer.Option(help="Title (default: from the file).")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help=f"One of {', '.join(OUTPUT_FORMATS)}.")
    ] = None,
    cover: CoverOption = None,
    keep_front_matter: Annotated[
        bool | None,
        typer.Option(
            "--keep-front-matter/--skip-front-matter",
            help="EPUB: also read the cover, title page, copyright, contents, index... "
            "(default: the server's, skipped).",
            show_default=False,
        ),
    ] = None,
    chapter_files: Annotated[
        bool | None,
        typer.Option(
            "--chapter-files/--no-chapter-files",
            help="One file per chapter besides the book (default: the server's).",
            show_default=False,
        ),
    ] = None,
    master: Annotated[
        str | None, typer.Option("--master", help="Lossless masters too: wav or flac.")
    ] = None,
    subtitles: Annotated[
        str | None,
        typer.Option("--subtitles", help="Timing files: srt,vtt,json or none."),
    ] = None,
    loudness_preset: Annotated[
        str | None,
        typer.Option("--loudness-preset", help="acx, podcast, broadcast or none."),
    ] = None,
    normalize: Annotated[
        bool | None,
        typer.Option(
            "--normalize/--no-normalize",
            help="Spell out numbers, dates, abbreviations, URLs (default: the server's, "
            "on); --no-normalize sends the text as written.",
            show_default=False,
        ),
    ] = None,
    lexicon: Annotated[
        Path | None,
        typer.Option(
            "--lexicon",
            help="Pronunciation file (`word = replacement`, `/regex/i = replacement`).",
            show_default=False,
        ),
    ] = None,
    id_column: IdColumnOption = None,
    text_column: TextColumnOption = None,
    voice_column: VoiceColumnOption = None,
    name_template: NameTemplateOption = None,
    callback_url: Annotated[
        str | None,
        typer.Option(
            "--callback-url",
            help="An http(s) URL that gets a signed webhook when the job ends (default: "
            "the API key's, if it has one).",
            show_default=False,
        ),
    ] = None,
    qa: Annotated[
        bool | None,
        typer.Option(
            "--qa/--no-qa",
            help="QA while rendering: each chunk checked with speech recognition, a flagged "
            "one rendered again, those still flagged listed with their times (default: the "
            "server's; needs its VOICEBATCH_ASR_MODEL_DIR).",
            show_default=False,
        ),
    ] = None,
    read_along: SubmitReadAlongOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the job finishes.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Send a book or a catalogue to a voicebatch server; prints the job id (a UUID)."""
    with reported_errors(cli_state(ctx).debug):
        if read_along and source.suffix.lower() in CATALOGUE_READERS:
            raise catalogue_refusal(str(source))  # before the upload
        client = client_for(server, api_key)
        if cover is not None:
            load_cover(cover)  # checked here, so a bad image fails before the upload
        if lexicon is not None:
            load_lexicon(lexicon)  # a bad line fails here, naming the file and line
        options = {
            "chapter_files": None if chapter_files is None else str(chapter_files).lower(),
            "keep_front_matter": None
            if keep_front_matter is None
            else str(keep_front_matter).lower(),
            "master": master,
            "subtitles": None if subtitles is None else ("" if subtitles == "none" else subtitles),
            "loudness_preset": loudness_preset,
            "normalize": None if normalize is None else str(normalize).lower(),
            "id_column": id_column,
            "text_column": text_column,
            "voice_column": voice_column,
            "name_template": name_template,
            "callback_url": callback_url,
            "qa": None if qa is None else str(qa).lower(),
            "read_along": None if read_along is None else str(read_along).lower(),
        }
        job = client.submit_file(
            source, title=title, fmt=fmt, options=options, cover=cover, lexicon=lexicon
        )
        err_console.print(
            f"submitted job [bold]{job['id']}[/] ({job['chunks']['total']} chunks)",
            highlight=False,
        )
        if not as_json and not wait:
            console.print(job["id"])
        if wait:
            try:
                job = follow(client, job["id"], show=not as_json)
            except KeyboardInterrupt:
                err_console.print(
                    f"\nstopped watching; job {job['id']} goes on (voicebatch watch {job['id']})"
                )
                raise typer.Exit(130) from None
            if not as_json:
                print_job(job)
    if as_json:
        console.print_json(json.dumps(job))
    if wait:
        _exit_for(job)


def watch(
    ctx: typer.Context,
    job: JobArgument,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Follow a submitted job with a progress bar until it finishes."""
    with reported_errors(cli_state(ctx).debug):
        client = client_for(server, api_key)
        try:
            final = follow(client, job)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        print_job(final)
    _exit_for(final)


def download(
    ctx: typer.Context,
    job: JobArgument,
    output: OutputDirOption = Path("out"),
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Download every file of a finished job (audio and manifest.json) into a folder."""
    with reported_errors(cli_state(ctx).debug):
        client = client_for(server, api_key)
        listing = client.outputs(job)
        if not listing.get("ready", True):
            # Archived files have no link: say what to do instead of a broken download.
            if any(f["state"] == "archived" for f in listing["files"]):
                raise ArchivedError(listing["message"])
            raise RetryableError(listing["message"])
        folder = check_output_dir(output)
        for entry in listing["files"]:
            dest = safe_output_path(folder, entry["name"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            size = client.download(entry["url"], dest)
            console.print(f"  {dest} ({size / 1e6:.2f} MB)", highlight=False)
        console.print(f"{len(listing['files'])} files of job {listing['job_id']} in {folder}")


def restore(
    ctx: typer.Context,
    job: JobArgument,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            max=365,
            envvar="VOICEBATCH_RESTORE_DAYS",
            show_envvar=True,
            help="How long the restored copies stay readable (default 7).",
        ),
    ] = None,
    tier: Annotated[
        str | None,
        typer.Option(
            "--tier",
            envvar="VOICEBATCH_RESTORE_TIER",
            show_envvar=True,
            help="Standard (hours), Bulk (cheaper, slower) or Expedited (minutes).",
        ),
    ] = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Ask for a job's archived files (GLACIER, DEEP_ARCHIVE) to be restored for download."""
    with reported_errors(cli_state(ctx).debug):
        if tier is not None and tier not in RESTORE_TIERS:
            raise InputError(f"unknown tier {tier!r} (use {', '.join(RESTORE_TIERS)})")
        listing = client_for(server, api_key).restore(job, days=days, tier=tier)
    counts = {s: sum(1 for f in listing["files"] if f["state"] == s) for s in STATES}
    for entry in listing["files"]:
        if entry["storage_class"] in ("GLACIER", "DEEP_ARCHIVE"):
            until = f" until {entry['restored_until']}" if entry.get("restored_until") else ""
            console.print(
                f"  {entry['name']}: {entry['storage_class']}, {entry['state']}{until}",
                highlight=False,
            )
    console.print(
        f"job {listing['job_id']}: {counts['ready']} files ready, "
        f"{counts['restoring']} restoring, {counts['archived']} archived",
        highlight=False,
    )


def cancel(
    ctx: typer.Context,
    job: JobArgument,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel a submitted job that has not finished."""
    with reported_errors(cli_state(ctx).debug):
        result = client_for(server, api_key).cancel(job)
    console.print(f"job {result['id']} {result['status']}")


def remote_jobs(server: str | None, api_key: str | None, limit: int, as_json: bool) -> None:
    """`voicebatch jobs --server`: the server's newest jobs, as a table or JSON."""
    page = client_for(server, api_key).jobs(limit=limit)
    if as_json:
        console.print_json(json.dumps(page["jobs"]))
        return
    print_jobs(
        [
            (
                j["id"],
                j["status"],
                j["chunks"]["done"],
                j["chunks"]["total"],
                j["audio_seconds"],
                j["title"],
                j["created_at"],
            )
            for j in page["jobs"]
        ]
    )


def remote_status(server: str | None, api_key: str | None, job: str, as_json: bool) -> None:
    """`voicebatch status --server`: one of the server's jobs."""
    info = client_for(server, api_key).job(job)
    if as_json:
        console.print_json(json.dumps(info))
    else:
        print_job(info)
