"""A dry run of planning (`voicebatch inspect FILE`): what would be read, what is left
out and why, how many chunks, and how long the audio and the render would be. Creates no
job and loads no model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Settings
from pipeline.engines import engine_info
from pipeline.ingest import Document
from pipeline.ingest.document import Skipped
from pipeline.plan.prepare import check_inputs
from pipeline.plan.spec import build_spec, job_lexicon


@dataclass(frozen=True)
class Pace:
    """How fast an engine speaks and renders, for estimates.

    `chars_per_second`: characters of text per second of speech; `realtime`: seconds of
    audio rendered per second of wall time on the machine `measured` names (None: a
    design target, not measured yet)."""

    chars_per_second: float
    realtime: float
    measured: str | None


# Piper: the bundled voice speaking the bundled example (1,927 characters in 103.5 s of
# speech), rendered at 20.6x real time by `make bench` (bench_embedded, 2-core x86_64).
# Maya1: a human narrator's pace, and the design's 150x on one H100 until bench-gpu runs.
PACES = {
    "piper": Pace(18.6, 20.6, "2-core x86_64 CPU (docs/benchmarks.md)"),
    "maya1": Pace(15.0, 150.0, None),
    "test-tone": Pace(21.0, 1000.0, "any CPU"),
}
# QA (`--qa`, VOICEBATCH_QA) checks speech on the CPU, whatever the engine: the tiny.en
# recogniser scores a clean render at about 90x real time on a 2-core x86_64 CPU
# (pipeline.qa.twostage's first stage; bench/bench_qa.py). Flagged chunks cost more.
QA_REALTIME = 90.0


@dataclass(frozen=True)
class ChapterPlan:
    title: str
    words: int
    chunks: int
    seconds: float  # estimated audio, pauses included


@dataclass
class Inspection:
    """Everything `voicebatch inspect` prints."""

    path: Path
    document: Document
    engine: str
    voice: str
    chapters: list[ChapterPlan] = field(default_factory=list)
    first_sentences: list[str] = field(default_factory=list)
    pace: Pace | None = None
    qa: bool = False  # QA while rendering is on: its time is estimated too

    @property
    def qa_seconds(self) -> float | None:
        return self.audio_seconds / QA_REALTIME if self.qa else None

    @property
    def chunks(self) -> int:
        return sum(c.chunks for c in self.chapters)

    @property
    def audio_seconds(self) -> float:
        return sum(c.seconds for c in self.chapters)

    @property
    def render_seconds(self) -> float | None:
        return self.audio_seconds / self.pace.realtime if self.pace else None

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        return self.document.skipped


def inspect_source(path: Path, settings: Settings, *, sentences: int = 3) -> Inspection:
    """Read and plan `path` as `voicebatch render` would, without a job or a model."""
    parsed = check_inputs(path, settings)
    engine = engine_info(settings)
    spec = build_spec(
        parsed.document,
        parsed.source,
        engine=engine,
        settings=settings,
        output_uri=None,
        kind=parsed.document.kind,
        lexicon=job_lexicon(settings, None),
    )
    pace = PACES.get(engine.name)
    out = Inspection(path, parsed.document, engine.name, spec.voice, pace=pace, qa=settings.qa)
    by_title = {c.title: c for c in parsed.document.chapters}
    for index, item in enumerate(spec.items):
        chapter = by_title.get(item.title)
        speech = sum(len(c.text) for c in item.chunks) / (pace.chars_per_second if pace else 15.0)
        pauses = sum(
            (settings.pause_paragraph_ms if c.paragraph_start else settings.pause_sentence_ms)
            for c in item.chunks[1:]
        )
        gap = settings.pause_chapter_ms if index else 0
        words = sum(len(p.split()) for p in chapter.paragraphs) if chapter else 0
        out.chapters.append(
            ChapterPlan(item.title, words, len(item.chunks), speech + (pauses + gap) / 1000)
        )
        if len(out.first_sentences) < sentences:
            out.first_sentences += [c.text for c in item.chunks][
                : sentences - len(out.first_sentences)
            ]
    return out
