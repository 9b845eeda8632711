"""The real `voicebatch` CLI in a subprocess with the real Piper voice."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from pipeline.audio.encode import decode

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aesop.md"
VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")


def cli(
    *args: str, data: Path, check: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env["VOICEBATCH_DATA_DIR"] = str(data)
    result = subprocess.run(
        [VOICEBATCH, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def spoken_words(text: str) -> int:
    body = text.split("---", 2)[2]
    return len([w for w in body.split() if any(c.isalpha() for c in w)])


@pytest.fixture(scope="module")
def rendered(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("render")
    result = cli(
        "render",
        str(EXAMPLE),
        "-o",
        str(root / "out"),
        "--format",
        "mp3",
        "--stage-times",
        str(root / "stages.json"),
        data=root / "data",
        check=True,
    )
    return root / "out", root / "data", result


def test_render_makes_a_file_per_chapter_and_the_whole_book(
    rendered: tuple[Path, Path, object],
) -> None:
    out, _, _ = rendered
    stems = [
        "01-the-fox-and-the-grapes",
        "02-the-hare-and-the-tortoise",
        "03-the-ant-and-the-grasshopper",
    ]
    # Each chapter's audio and its timing files (SRT, WebVTT, JSON).
    assert sorted(p.name for p in (out / "chapters").iterdir()) == sorted(
        stem + suffix for stem in stems for suffix in (".mp3", ".srt", ".vtt", ".timings.json")
    )
    book = decode(out / "aesop.mp3")
    words = spoken_words(EXAMPLE.read_text())
    wpm = words / (book.duration / 60)
    assert 120 <= wpm <= 200, (
        f"{words} words in {book.duration:.1f} s is {wpm:.0f} words per minute"
    )
    loudness = pyloudnorm.Meter(book.sample_rate).integrated_loudness(book.audio.astype(np.float64))
    assert abs(loudness + 18.0) <= 1.0  # -18 LUFS target; mp3 coding moves it a little
    assert {k.lower(): v for k, v in book.metadata.items()}["title"] == "Three Fables of Aesop"


def test_manifest_describes_chapters_and_chunks_as_rendered(
    rendered: tuple[Path, Path, object],
) -> None:
    out, _, _ = rendered
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["title"] for c in manifest["chapters"]] == [
        "The Fox and the Grapes",
        "The Hare and the Tortoise",
        "The Ant and the Grasshopper",
    ]
    assert manifest["loudness"]["true_peak_dbtp"] <= -1.0
    # Each chapter opens with its heading read aloud, as audiobook listeners (and ACX) expect.
    assert [c["chunks"][0]["text"] for c in manifest["chapters"]] == [
        c["title"] for c in manifest["chapters"]
    ]
    for chapter in manifest["chapters"]:
        audio = decode(out / chapter["file"])
        assert abs(audio.duration - chapter["duration"]) < 0.05
        # Speech, not silence, in every chapter: RMS well above -45 dBFS.
        assert 20 * np.log10(np.sqrt(np.mean(audio.audio**2))) > -45
        times = [(c["start"], c["end"]) for c in chapter["chunks"]]
        assert all(s < e for s, e in times) and all(a[1] < b[0] for a, b in pairwise(times))
        assert times[-1][1] <= chapter["duration"] + 0.001
    text = " ".join(c["text"] for ch in manifest["chapters"] for c in ch["chunks"])
    assert "Slow but steady wins the race." in text and "<" not in text


def test_stage_times_say_where_the_render_spent_its_time(
    rendered: tuple[Path, Path, object],
) -> None:
    out, _, _ = rendered
    report = json.loads((out.parent / "stages.json").read_text())
    stages = report["stages"]
    for name in ("engine", "engine_load", "render.trim", "render.store_chunks", "state"):
        assert stages[name]["wall"] > 0 and stages[name]["calls"] >= 1, name
    for name in ("master.measure", "master.apply", "encode.mp3", "timing_files"):
        assert stages[name]["wall"] > 0 and stages[name]["calls"] >= 1, name
    # 3 chapter files and the book, each with srt, vtt and json timings
    assert stages["timing_files"]["calls"] == 4
    # the engine is most of the work, and stages nested in others are not counted twice
    assert stages["engine"]["wall"] > stages["master.measure"]["wall"]
    marks = report["marks"]
    assert (
        marks["engine_load_start"]
        < marks["plan_done"]
        < marks["chunks_done"]
        < marks["assemble_done"]
        <= marks["finished"]
    )


def test_jobs_and_status_show_the_finished_job(rendered: tuple[Path, Path, object]) -> None:
    out, data, _ = rendered
    job_id = json.loads((out / "manifest.json").read_text())["job_id"]
    listing = json.loads(cli("jobs", "--json", data=data, check=True).stdout)
    assert [(j["id"], j["status"], j["progress"]) for j in listing] == [(job_id, "done", 1.0)]
    status = cli("status", job_id[:8], data=data, check=True).stdout
    assert job_id in status and "done" in status
    table = cli("jobs", data=data, check=True).stdout
    assert job_id[:8] in table


def test_rerun_of_a_finished_render_does_no_work(rendered: tuple[Path, Path, object]) -> None:
    out, data, _ = rendered
    again = cli(
        "render", str(EXAMPLE), "-o", str(out), "--format", "mp3", "-q", data=data, check=True
    )
    assert "rendered 0 chunks, 0 from cache" in again.stdout and "already finished" in again.stdout


def _writer_when_paused(fifo: Path, proc: subprocess.Popen[str], seconds: float) -> int:
    """Open `fifo` for writing once the render waits on it (the test engine's pause):
    until then there is no reader and the open fails with ENXIO."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        assert proc.poll() is None, f"render ended before its pause: {proc.communicate()}"
        assert time.monotonic() < deadline, "render never reached its pause"
        time.sleep(0.02)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_then_rerun_renders_only_what_was_missing(tmp_path: Path, sig: int, code: int) -> None:
    """The render is stopped while its engine is at its fourth chunk, three done: the test
    engine waits on a FIFO there until the signal has been sent, so the stop cannot come
    too late (after the render ended) however busy the machine is."""
    data, out, fifo = tmp_path / "data", tmp_path / "out", tmp_path / "pause"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env |= {"VOICEBATCH_DATA_DIR": str(data), "VOICEBATCH_ENGINE": "test-tone"}
    paused = env | {
        "VOICEBATCH_TEST_ENGINE_PAUSE_FIFO": str(fifo),
        "VOICEBATCH_TEST_ENGINE_PAUSE_AFTER": "3",
    }
    args = [
        VOICEBATCH,
        "render",
        str(EXAMPLE),
        "-o",
        str(out),
        "--format",
        "opus",
        "--batch-size",
        "1",
        "-q",
    ]
    proc = subprocess.Popen(
        args,
        env=paused,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`cmd &` in a script, nohup) has SIGINT
        # ignored, and an ignored signal stays ignored across exec: the render would
        # never see the Ctrl-C this test sends. A terminal's Ctrl-C is what it mimics.
        preexec_fn=_sigint_default,
    )
    writer = _writer_when_paused(fifo, proc, seconds=120)
    try:
        proc.send_signal(sig)  # Ctrl-C, or `kill` (a spot reclaim, a closing terminal)
    finally:
        os.close(writer)  # the engine goes on (or is interrupted already)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr and "resume" in stderr
    with sqlite3.connect(data / "voicebatch.db") as db:
        total, before, leased = db.execute(
            "select count(*), sum(status = 'done'), sum(status = 'leased') from chunks"
        ).fetchone()
    assert before == 3 and total > before and leased == 0
    assert not (out / "manifest.json").exists()

    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming job" in resumed.stderr
    assert f"rendered {total - before} chunks, 0 from cache" in resumed.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(len(c["chunks"]) for c in manifest["chapters"]) == total
    assert decode(out / "aesop.opus").sample_rate == 48000


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda d: d / "missing.md", [], "no such file"),
        (lambda d: write(d / "empty.md", b""), [], "is empty"),
        (lambda d: write(d / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), [], "binary"),
        (lambda d: write(d / "latin1.txt", "naïve café".encode("latin-1")), [], "not valid UTF-8"),
        (lambda d: write(d / "book.docx", b"PK\x03\x04"), [], "unsupported input format '.docx'"),
        (
            lambda d: write(d / "ok.md", b"# T\n\nHello."),
            ["--engine", "espeak"],
            "unknown engine 'espeak'",
        ),
        (
            lambda d: write(d / "ok.md", b"# T\n\nHello."),
            ["--format", "aiff"],
            "invalid setting output_format",
        ),
        (
            lambda d: write(d / "ok.md", b"# T\n\nHello."),
            ["--voice", "/nope/v.onnx"],
            "unknown piper voice '/nope/v.onnx'",
        ),
        (
            lambda d: write(d / "ok.md", b"# T\n\nHello."),
            ["--stage-times", "/nope/stages.json"],
            "--stage-times: folder /nope does not exist",
        ),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_creates_no_job(
    tmp_path: Path,
    make,
    extra: list[str],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    source = make(tmp_path)
    result = cli("render", str(source), "-o", str(tmp_path / "out"), *extra, data=tmp_path / "data")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert json.loads(cli("jobs", "--json", data=tmp_path / "data", check=True).stdout) == []


def test_status_of_an_unknown_job_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("status", "0123abcd", data=tmp_path / "data")
    assert result.returncode == 4 and result.stderr.startswith("error: no job 0123abcd")
