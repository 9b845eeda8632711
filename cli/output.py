"""How the CLI shows things: errors in one line, the render progress bar, durations."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from pipeline.errors import VoicebatchError, exit_code_for

if TYPE_CHECKING:
    from pipeline.render.renderer import RenderProgress

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Turn our errors into one line on stderr and the mapped exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except VoicebatchError as exc:
        if debug:
            traceback.print_exc()
        fail(exc.message, exit_code_for(exc))
    except Exception as exc:  # a bug or an unexpected failure: still one line unless --debug
        if debug:
            traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)


def clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.fields.get("speed")
        return Text(f"{speed:5.1f}x real time" if speed else "   -x real time", style="cyan")


@contextmanager
def render_progress(enabled: bool) -> Iterator[Callable[[RenderProgress], None]]:
    """A progress bar: chunks done/total, seconds of audio, speed vs real time, ETA."""
    if not enabled:
        yield lambda _event: None
        return
    progress = Progress(
        TextColumn("[bold]rendering"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.fields[chunks]} chunks"),
        TextColumn("{task.fields[audio]:>8} audio"),
        _SpeedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    started = time.perf_counter()
    task_id = progress.add_task("render", total=None, audio="0:00", speed=0.0, chunks="?")

    def update(event: RenderProgress) -> None:
        elapsed = max(time.perf_counter() - started, 1e-6)
        progress.update(
            task_id,
            total=event.chunks_total,
            chunks=event.chunks_total,
            completed=event.chunks_done + event.chunks_failed,
            audio=clock(event.audio_seconds_total),
            speed=event.stats.audio_seconds / elapsed,
        )

    with progress:
        yield update


def is_tty() -> bool:
    return sys.stderr.isatty()


def print_jobs(rows: list[tuple[str, str, int, int, float, str, str]]) -> None:
    """A jobs table: (id, status, chunks done, chunks total, audio seconds, title, created)."""
    from rich.table import Table

    table = Table("job", "status", "progress", "audio", "title", "created")
    for job_id, status, done, total, audio, title, created in rows:
        table.add_row(
            job_id, status, f"{done}/{total}", clock(audio), title, created[:19].replace("T", " ")
        )
    console.print(table)
