"""Scenario 9, embedded: a chunk whose rendering kills `voicebatch render` (a segfault, an
OOM kill: the test engine `os._exit`s on one word). Run the same command again until it
ends, as a person or a script would: every crash counts an attempt of the chunks the dead
run held, those are then rendered one at a time, and after max_attempts the chunk is
failed with why; the run ends partially_failed naming the text, having written the rest
of the book, after a bounded number of runs. Each run after a crash says what the last
one died on."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.harness import base_env
from tests.chaos.report import RESULTS, ScenarioResult
from tests.support.stack import VOICEBATCH

pytestmark = pytest.mark.e2e
MAX_ATTEMPTS = 3
BATCH = 4
POISON = "This one is POISON to the engine."


def test_a_chunk_that_kills_an_embedded_render_fails_alone_after_its_attempts(
    tmp_path: Path,
) -> None:
    book = tmp_path / "book.md"
    parts = [[f"Part {p} line {s} is spoken." for s in range(5)] for p in range(2)]
    parts[0].insert(2, POISON)
    book.write_text(
        "\n\n".join(f"# Part {p}\n\n" + " ".join(lines) for p, lines in enumerate(parts)) + "\n"
    )
    journal, data, out = tmp_path / "renders.journal", tmp_path / "data", tmp_path / "out"
    env = base_env(
        VOICEBATCH_DATA_DIR=str(data),
        VOICEBATCH_ENGINE="test-tone",
        VOICEBATCH_TEST_ENGINE_CRASH_ON="POISON",
        VOICEBATCH_TEST_ENGINE_JOURNAL=str(journal),
        VOICEBATCH_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        VOICEBATCH_BATCH_SIZE=str(BATCH),
        VOICEBATCH_CHUNK_MAX_CHARS="40",
        VOICEBATCH_NORMALIZE_TEXT="false",
        VOICEBATCH_OUTPUT_FORMAT="wav",
    )
    command = [VOICEBATCH, "render", str(book), "-o", str(out), "-q"]
    runs: list[subprocess.CompletedProcess[str]] = []
    last_started = time.monotonic()
    while len(runs) < MAX_ATTEMPTS + 3:  # bounded: a loop would be caught here
        last_started = time.monotonic()
        runs.append(subprocess.run(command, env=env, capture_output=True, text=True, timeout=300))
        if runs[-1].returncode != 70:  # 70: the engine killed the process
            break
    recovered = time.monotonic() - last_started
    transcript = "\n".join(f"--- exit {r.returncode}\n{r.stderr}{r.stdout}" for r in runs)

    # one crash per attempt, then a run that fails the chunk and writes the rest
    assert [r.returncode for r in runs] == [70] * MAX_ATTEMPTS + [1], transcript
    first, *later = runs[1:]
    assert "died while rendering" in first.stderr and "one at a time" in first.stderr
    for run, attempt in zip(later, range(2, MAX_ATTEMPTS + 1), strict=True):
        said = [line for line in run.stderr.splitlines() if "died while rendering" in line]
        assert len(said) == 1 and repr(POISON) in said[0], transcript
        assert f"(attempt {attempt} of {MAX_ATTEMPTS})" in said[0], transcript
    final = runs[-1]
    assert "partially_failed" in final.stdout, transcript
    assert repr(POISON) in final.stderr and f"gave up after {MAX_ATTEMPTS}" in final.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    (failed,) = manifest["failed_chunks"]
    assert failed["text"] == POISON
    assert [c["title"] for c in manifest["chapters"]] == ["Part 1"]  # the sound chapter
    assert (out / manifest["file"]).stat().st_size > 0
    with sqlite3.connect(data / "voicebatch.db") as db:
        states = dict(db.execute("select status, count(*) from chunks group by status").fetchall())
        attempts = dict(db.execute("select text, attempts from chunks").fetchall())
        hashes = {h for (h,) in db.execute("select content_hash from chunks where status = 'done'")}
    assert states.get("failed") == 1 and "leased" not in states and "pending" not in states
    assert attempts[POISON] == MAX_ATTEMPTS
    # every other chunk is done, and stored once: one object a text
    stored = list((data / "objects" / "chunks").rglob("*.wav"))
    assert len(stored) == len(hashes), stored
    chunks_total = sum(states.values())
    renders = Counter(line.split()[1] for line in journal.read_text().splitlines())
    RESULTS.append(
        ScenarioResult(
            "9. a chunk that always crashes its process (embedded `voicebatch render`)",
            jobs=1,
            chunks=chunks_total,
            faults=MAX_ATTEMPTS,
            duplicates=len(stored) - len(hashes),
            lost=chunks_total - 1 - states.get("done", 0),
            wasted=sum(renders.values()) - len(renders),
            recover_seconds=round(recovered, 1),
            lease_overdue_seconds=0.0,
        )
    )
    # the poison was tried once per attempt; the others of its batch at most twice
    assert renders.most_common(1)[0][1] == MAX_ATTEMPTS
    assert sum(renders.values()) - len(renders) <= MAX_ATTEMPTS - 1 + BATCH - 1
