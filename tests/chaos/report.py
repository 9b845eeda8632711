"""The suite's summary table: one row a scenario, printed at the end of the run and kept
in docs/reliability.md by `make chaos`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ScenarioResult:
    """One row of the suite's summary table."""

    scenario: str
    jobs: int
    chunks: int
    faults: int
    duplicates: int  # chunks marked done twice, objects written twice, states gone backwards
    lost: int  # chunks, items or jobs that did not reach the end they should have
    wasted: int  # renders beyond the first of each chunk's text (work done again)
    recover_seconds: float | None  # last fault -> every job final
    lease_overdue_seconds: float  # the longest an expired lease sat before it was taken over
    duplicate_assemblies: int = 0  # assembly runs beyond the first per item and job


RESULTS: list[ScenarioResult] = []


def summary_table(results: Sequence[ScenarioResult]) -> str:
    """The results as a Markdown table, one row a scenario."""
    head = (
        "| scenario | jobs | chunks | faults injected | duplicates | lost "
        "| wasted renders | duplicate assemblies | time to recover | longest expired lease |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r.scenario} | {r.jobs} | {r.chunks} | {r.faults} | {r.duplicates} | {r.lost} "
        f"| {r.wasted} | {r.duplicate_assemblies} "
        f"| {'' if r.recover_seconds is None else f'{r.recover_seconds:.1f} s'} "
        f"| {r.lease_overdue_seconds:.1f} s |"
        for r in sorted(results, key=lambda r: int(r.scenario.split(".")[0]))
    ]
    return "\n".join([head, *rows])


START, END = "<!-- chaos-summary:start -->", "<!-- chaos-summary:end -->"


def write_report(path: Path, table: str) -> None:
    """Replace the summary between the markers in `path` with this run's table."""
    import platform
    from datetime import UTC, datetime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"{START}\nLatest run: {stamp}, `make chaos`, {os.cpu_count()} cores ({cpu}).\n\n"
        f"{table}\n{END}"
    )
    page = path.read_text() if path.exists() else f"{START}\n{END}\n"
    if START not in page:
        page = page.rstrip("\n") + f"\n\n{START}\n{END}\n"
    before, rest = page.split(START, 1)
    after = rest.split(END, 1)[1] if END in rest else ""
    path.write_text(before + block + after)
