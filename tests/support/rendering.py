"""Rendering helpers tests share: an engine that counts what it renders, a render of a
file into a folder, and books long enough to interrupt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.audio.cover import load_cover
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.testing import TestToneEngine
from pipeline.errors import PermanentError
from pipeline.plan.prepare import check_inputs
from pipeline.runner import LocalRuntime, render_file
from pipeline.state.models import JobStatus


class CountingEngine(TestToneEngine):
    """The test engine, counting requests; optionally Ctrl-C after N batches or failing on a word."""

    def __init__(self, *, interrupt_after: int | None = None, fail_on: str | None = None) -> None:
        self.requests: list[str] = []
        self.batches = 0
        self.interrupt_after = interrupt_after
        self.fail_on = fail_on

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        if self.interrupt_after is not None and self.batches >= self.interrupt_after:
            raise KeyboardInterrupt
        self.batches += 1
        if self.fail_on and any(self.fail_on in r.text for r in requests):
            raise PermanentError(f"engine cannot say {self.fail_on!r}")
        self.requests += [r.text for r in requests]
        return super().render_batch(requests)


def run(runtime: LocalRuntime, engine: CountingEngine, source: Path, out: Path, **kw: object):  # type: ignore[no-untyped-def]
    runtime.engine = engine
    return render_file(runtime, check_inputs(source, runtime.settings), output_dir=out, **kw)  # type: ignore[arg-type]


def long_book(tmp_path: Path, chapters: int = 3, paragraphs: int = 6) -> Path:
    lines = ["# Long Book\n"]
    for c in range(chapters):
        lines.append(f"## Chapter {c + 1}\n")
        for p in range(paragraphs):
            lines.append(
                f"Paragraph {p} of chapter {c} begins here. It has a second sentence, number {p}.\n"
            )
    path = tmp_path / "long.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def render(
    runtime: LocalRuntime, source: Path, out: Path, cover: Path | None = None, **settings: Any
):  # type: ignore[no-untyped-def]
    runtime.settings = runtime.settings.model_copy(update=settings)
    runtime.engine = CountingEngine()
    outcome = render_file(
        runtime,
        check_inputs(source, runtime.settings),
        output_dir=out,
        cover=load_cover(cover) if cover else None,
    )
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    return json.loads((out / "manifest.json").read_text())
