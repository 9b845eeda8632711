"""QA while rendering, as `voicebatch status` shows it (this machine's job or a server's)."""

from __future__ import annotations

from typing import Any

from cli.output import clock, console


def print_job_qa(qa: dict[str, Any]) -> None:
    """QA while rendering: the counts, then each chunk still flagged (with its times in
    the book, or its file, once the job is assembled)."""
    flagged = qa.get("flagged_chunks") or []
    console.print(
        f"{'QA':>9}: {qa.get('chunks', 0)} chunks checked, {qa.get('retaken', 0)} rendered "
        f"again, {len(flagged)} flagged",
        highlight=False,
    )
    for chunk in flagged:
        if chunk.get("start") is not None:  # assembled: its times (the API sends nulls)
            start = chunk["start"] if chunk.get("book_start") is None else chunk["book_start"]
            end = chunk["end"] if chunk.get("book_end") is None else chunk["book_end"]
            where = f"{clock(start)}-{clock(end)} {chunk['file']}"
        else:
            where = f"chunk {chunk['seq']}"
        console.print(
            f"  {where}: {', '.join(chunk['flags'])} ({chunk['error_rate']:.0%}, "
            f"{chunk['takes']} takes) -- {chunk['text'][:80]!r}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
