"""`voicebatch jobs` and `voicebatch status`: this machine's jobs, or a server's (--server)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import typer
from sqlalchemy.orm import Session

from cli import remote
from cli.context import cli_state
from cli.options import ApiKeyOption, DataDirOption, JsonOption, ServerOption
from cli.output import clock, console, print_jobs, reported_errors
from cli.qa_listing import print_job_qa
from pipeline.config import load_settings
from pipeline.qa.results import job_qa
from pipeline.runner import LocalRuntime
from pipeline.state import store
from pipeline.state.db import transaction as db_transaction
from pipeline.state.models import Job


def _job_dict(session: Session, job: Job) -> dict[str, Any]:
    progress = store.job_progress(session, job_id=job.id)
    return {
        "id": str(job.id),
        "status": str(job.status),
        "title": job.title,
        "source": job.source_name,
        "engine": job.engine,
        "voice": job.voice,
        "format": job.output_format,
        "output": job.output_uri,
        "chunks_total": progress.chunks_total,
        "chunks_done": progress.chunks_done,
        "chunks_failed": progress.chunks_failed,
        "chunks_pending": progress.chunks_pending,
        "progress": round(progress.fraction, 4),
        "audio_seconds": round(progress.audio_seconds, 2),
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def jobs(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List jobs with status and progress: a server's (--server) or this machine's."""
    with reported_errors(cli_state(ctx).debug):
        if server:
            remote.remote_jobs(server, api_key, limit, as_json)
            return
        runtime = LocalRuntime.open(load_settings(data_dir=data_dir))
        with db_transaction(runtime.factory) as session:
            rows = [_job_dict(session, job) for job in store.list_jobs(session, limit=limit)]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("no jobs yet: try `voicebatch render book.md -o out/`")
        return
    print_jobs(
        [
            (
                r["id"][:8],
                r["status"],
                r["chunks_done"],
                r["chunks_total"],
                r["audio_seconds"],
                r["title"],
                r["created_at"],
            )
            for r in rows
        ]
    )


def status(
    ctx: typer.Context,
    job: Annotated[
        str, typer.Argument(help="Job id, or its first characters.", show_default=False)
    ],
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show one job: status, progress, errors (on a server with --server)."""
    with reported_errors(cli_state(ctx).debug):
        if server:
            remote.remote_status(server, api_key, job, as_json)
            return
        runtime = LocalRuntime.open(load_settings(data_dir=data_dir))
        with db_transaction(runtime.factory) as session:
            found = store.get_job(session, job)
            info = _job_dict(session, found)
            info["failed"] = [
                {"seq": c.seq, "text": c.text, "error": c.error}
                for c in store.failed_chunks(session, job_id=found.id)
            ]
            info["qa"] = job_qa(session, found)
    if as_json:
        console.print_json(json.dumps(info))
        return
    output = info["output"] or ""
    if output.startswith("file://"):
        info["output"] = unquote(urlsplit(output).path)  # show a local folder as a path
    for key in ("id", "status", "title", "source", "engine", "voice", "format", "output"):
        console.print(f"{key:>9}: {info[key]}", highlight=False)
    console.print(
        f"{'chunks':>9}: {info['chunks_done']}/{info['chunks_total']} done, "
        f"{info['chunks_failed']} failed, {info['chunks_pending']} to go "
        f"({info['progress']:.0%})",
        highlight=False,
    )
    console.print(f"{'audio':>9}: {clock(info['audio_seconds'])}", highlight=False)
    if info["error"]:
        console.print(f"{'error':>9}: {info['error']}", highlight=False)
    for failed in info["failed"]:
        console.print(
            f"  chunk {failed['seq']}: {failed['error']} -- {failed['text'][:80]!r}",
            highlight=False,
        )
    if info["qa"] is not None:
        print_job_qa(info["qa"])
