"""Catalogues rendered in embedded mode with the test engine: one named file per row, a
summary whose durations are the files', per-row voices reaching the engine."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.audio.encode import decode
from pipeline.config import Settings
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.testing import TestToneEngine
from pipeline.errors import InputError, PermanentError
from pipeline.plan.prepare import check_inputs
from pipeline.runner import LocalRuntime, render_file
from pipeline.state import store
from pipeline.state.db import transaction


def runtime_for(tmp_path: Path, **settings: object) -> LocalRuntime:
    return LocalRuntime.open(
        Settings(engine="test-tone", data_dir=tmp_path / "data", **settings)  # type: ignore[arg-type]
    )


def summary(out: Path) -> list[dict[str, str]]:
    text = (out / "items" / "summary.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_a_thousand_items_render_to_a_thousand_named_files_and_a_summary(tmp_path: Path) -> None:
    source = tmp_path / "shop.csv"
    rows = [("id", "text")] + [
        (f"SKU-{n:04d}", f"Product {n}: a sturdy thing, {'very ' * (n % 4)}useful.")
        for n in range(1000)
    ]
    with source.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    runtime = runtime_for(tmp_path, output_format="wav", subtitles="none")
    out = tmp_path / "out"
    started = time.perf_counter()
    outcome = render_file(runtime, check_inputs(source, runtime.settings), output_dir=out)
    seconds = time.perf_counter() - started
    assert outcome.assembly is not None and str(outcome.assembly.status) == "done"

    files = sorted(p.relative_to(out / "items").as_posix() for p in (out / "items").iterdir())
    expected = sorted(f"SKU-{n:04d}.wav" for n in range(1000))
    assert files == sorted([*expected, "summary.csv"])

    table = summary(out)
    assert list(table[0]) == ["id", "file", "duration_seconds", "status", "error"]
    assert len(table) == 1000
    assert [r["id"] for r in table] == [f"SKU-{n:04d}" for n in range(1000)]
    for row in table:
        assert row["status"] == "done" and row["error"] == ""
        assert row["file"] == f"items/{row['id']}.wav"
        decoded = decode(out / row["file"])
        assert abs(decoded.duration - float(row["duration_seconds"])) < 0.001, row
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"] == "items/summary.csv" and len(manifest["items"]) == 1000
    assert "items/summary.csv" in outcome.assembly.other_files
    print(f"1000 items in {seconds:.1f} s")


class FailingTone(TestToneEngine):
    """The test engine, refusing any text with the word `broken` in it."""

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        if any("broken" in r.text.split() for r in requests):
            raise PermanentError("engine cannot say 'broken'")
        return super().render_batch(requests)


def test_per_row_voices_reach_the_engine_and_failures_land_in_the_summary(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "renders.journal"
    source = tmp_path / "shop.jsonl"
    lines = [
        {"id": "a", "text": "Same words.", "voice": "warm narrator"},
        {"id": "b", "text": "Same words."},
        {"id": "c", "text": "Same words.", "voice": ""},
        {"id": "d", "text": "This one is broken today."},
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    runtime = runtime_for(tmp_path, voice="house", test_engine_journal=journal)
    runtime.engine = FailingTone(journal=journal)
    out = tmp_path / "out"
    outcome = render_file(runtime, check_inputs(source, runtime.settings), output_dir=out)
    assert outcome.assembly is not None
    assert str(outcome.assembly.status) == "partially_failed"

    voices = sorted(line.split(" ", 2)[2] for line in journal.read_text().splitlines())
    # b and c share the job's voice and text, so one render; a has its own voice; d is
    # tried alone after its batch failed.
    assert voices.count("warm narrator") == 1
    assert "house" in voices and "tone" not in voices
    with transaction(runtime.factory) as session:
        job = store.list_jobs(session, limit=1)[0]
        items = store.job_items(session, job_id=job.id)
        assert [i.voice for i in items] == ["warm narrator", None, None, None]
        chunks = {i.title: store.item_chunks(session, item_id=i.id)[0] for i in items}
    assert chunks["b"].content_hash == chunks["c"].content_hash
    assert chunks["a"].content_hash != chunks["b"].content_hash

    table = {row["id"]: row for row in summary(out)}
    assert [table[k]["status"] for k in "abcd"] == ["done", "done", "done", "failed"]
    assert table["d"]["file"] == "" and table["d"]["duration_seconds"] == ""
    assert "engine cannot say 'broken'" in table["d"]["error"]
    assert not (out / "items" / "d.mp3").exists()


def test_bad_rows_and_unsafe_names_create_nothing(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\na,Fine.\na,Twice.\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 3"):
        check_inputs(bad, runtime.settings)
    unsafe = tmp_path / "unsafe.csv"
    unsafe.write_text("id,text\nok,Fine.\n../../escape,Out.\n", encoding="utf-8")
    runtime.engine = TestToneEngine()
    with pytest.raises(InputError, match=r"line 3: file name '\.\./\.\./escape\.mp3'"):
        render_file(runtime, check_inputs(unsafe, runtime.settings), output_dir=tmp_path / "o")
    with transaction(runtime.factory) as session:
        assert store.list_jobs(session, limit=10) == []
    assert not (tmp_path / "escape.mp3").exists()


def test_sub_folders_when_the_job_allows_them(tmp_path: Path) -> None:
    source = tmp_path / "shop.csv"
    source.write_text("id,text\nshoes/red,Red shoes.\nshoes/blue,Blue shoes.\n", encoding="utf-8")
    runtime = runtime_for(tmp_path, item_subfolders=True, subtitles="none")
    runtime.engine = TestToneEngine()
    out = tmp_path / "out"
    render_file(runtime, check_inputs(source, runtime.settings), output_dir=out)
    assert sorted(p.name for p in (out / "items" / "shoes").iterdir()) == ["blue.mp3", "red.mp3"]
    assert [r["file"] for r in summary(out)] == ["items/shoes/red.mp3", "items/shoes/blue.mp3"]


def test_the_cli_renders_a_catalogue_and_refuses_bad_ones_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    env = {"VOICEBATCH_ENGINE": "test-tone", "VOICEBATCH_DATA_DIR": str(tmp_path / "data")}
    source = tmp_path / "shop.csv"
    source.write_text("sku,words\nmug,A red mug.\nplate,A blue plate.\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["render", str(source), "-o", str(out), "-q", "--id-column", "sku"]
    args += ["--text-column", "words", "--name-template", "{index}-{id}.{ext}"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "2 items" in result.output and "summary CSV" in result.output
    assert [r["file"] for r in summary(out)] == ["items/1-mug.mp3", "items/2-plate.mp3"]
    again = CliRunner().invoke(app, args, env=env)
    assert again.exit_code == 0 and "already finished" in again.output

    for text, flags, words in [
        ("id,text\na,Fine.\na,Twice.\n", [], "line 3: 'id' 'a' repeats the id of line 2"),
        ("sku,text\na,Fine.\n", [], "line 1: no 'id' column"),
        ("id,text\na/b,Fine.\n", [], "line 2: file name 'a/b.mp3' has '/'"),
        ("id,text\na,Fine.\n", ["--name-template", "{sku}.{ext}"], r"unknown field {sku}"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text, encoding="utf-8")
        fresh_out = tmp_path / "never"
        refused = CliRunner().invoke(
            app, ["render", str(bad), "-o", str(fresh_out), *flags], env=env
        )
        assert refused.exit_code == 2, refused.output
        assert words in refused.output and "Traceback" not in refused.output
        assert not fresh_out.exists()
