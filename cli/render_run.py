"""The heavy half of `voicebatch render`, imported once its input has passed every check
and its engine has started loading (cli.render): open the job database, plan, render,
assemble, and print what was made."""

from __future__ import annotations

import json
import signal
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import typer

from cli.output import clock, console, err_console, render_progress
from pipeline.assemble.keys import MANIFEST_KEY, describe_key
from pipeline.assemble.manifest import is_catalogue, loudness_measure, read_manifest
from pipeline.audio.cover import Cover
from pipeline.config import Settings
from pipeline.engines import Engine
from pipeline.errors import InputError
from pipeline.ingest import ParsedSource
from pipeline.plan.jobs import PlannedJob
from pipeline.runner import LocalRuntime, RenderOutcome, render_file
from pipeline.stages import CLOCK
from pipeline.storage.local import LocalObjectStore


def run_render(
    settings: Settings,
    checked: ParsedSource,
    engine: Future[Engine],
    *,
    output: Path,
    fresh: bool,
    quiet: bool,
    cover: Cover | None,
    stage_times: Path | None,
) -> None:
    """Render `checked` into `output` with the engine `engine` is loading."""
    runtime = LocalRuntime.open(settings)
    runtime.engine = engine.result()

    def planned(job: PlannedJob) -> None:
        verb = "resuming" if job.resumed else "created"
        err_console.print(
            f"{verb} job [bold]{job.job_id}[/] ({job.chunks_total} chunks)", highlight=False
        )

    def notice(line: str) -> None:
        err_console.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)

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
                cover=cover,
                notice=notice,
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
    CLOCK.mark("finished")
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
    if outcome.read_along:
        epub = outcome.output_dir / outcome.read_along
        console.print(f"read-along EPUB: {epub}", highlight=False, soft_wrap=True)
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
        text = str(failed.get("text") or "")
        quoted = repr(text if len(text) <= 70 else text[:67] + "...")
        err_console.print(
            f"failed chunk {failed['seq']} ({failed['item']}) {quoted}: {failed['error']}",
            style="red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if outcome.qa is not None:
        print_qa(outcome.qa)
    if assembly.failed_chunks:
        raise typer.Exit(1)


def print_qa(summary: dict[str, Any]) -> None:
    """QA while rendering: what it checked, and each chunk still flagged with its times
    (in the book where there is one, else in its file), to listen to. Not a failure."""
    flagged = summary.get("flagged_chunks") or []
    console.print(
        f"QA: {summary.get('chunks', 0)} chunks checked, {summary.get('retaken', 0)} "
        f"rendered again, "
        + (
            f"[bold yellow]{len(flagged)} still flagged[/]" if flagged else "[green]none flagged[/]"
        ),
        highlight=False,
    )
    for chunk in flagged:
        start = chunk.get("book_start", chunk["start"])
        end = chunk.get("book_end", chunk["end"])
        text = str(chunk.get("text") or "")
        quoted = repr(text if len(text) <= 60 else text[:57] + "...")
        console.print(
            f"  {clock(start)}-{clock(end)} {chunk['file']} chunk {chunk['chunk']}: "
            f"{', '.join(chunk['flags'])} ({chunk['error_rate']:.0%} errors, "
            f"{chunk['takes']} takes) {quoted}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        return read_manifest(LocalObjectStore(folder)) or {}
    except OSError:  # a folder that cannot be read
        return {}
