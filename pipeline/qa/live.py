"""QA while rendering (`render --qa`, `VOICEBATCH_QA`, a job's `qa` option).

Each chunk is checked right after it is rendered, by the renderer that rendered it, in
the same two stages as `voicebatch qa` (`pipeline.qa.twostage`): a batch's chunks are
scored against their text, and only the suspects are transcribed and judged. A
flagged chunk is rendered again with another seed (`take_seed`), up to
`VOICEBATCH_QA_RETRIES` more takes, and the best take is kept (not flagged, then the
lowest error rate); a chunk still flagged is kept too, never failed, and listed with its
times once the job is assembled (`pipeline.qa.results.record_job`: qa.json, the word
times in the timing files, the manifest's `qa` summary and the job's row).

Where it runs, in both modes: beside the engine, in the renderer's own thread (see
docs/architecture.md, "QA while rendering"): a chunk is final only once it is judged, so
assembly, leases and the reconciler need nothing new, and a re-take is a call to the
engine the renderer already holds.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipeline.qa.asr import SAMPLE_RATE, Recogniser, check_model_dir, decode, load_recogniser
from pipeline.qa.check import Span, TimedWord
from pipeline.qa.twostage import TwoStageChecker

log = logging.getLogger(__name__)
T = TypeVar("T")
GAP_SECONDS = 1.0  # silence between chunks checked together, as a paragraph pause


def take_seed(content_hash: str, take: int) -> int | None:
    """The seed of a chunk's take number `take`: None for the first (the engine's own
    seed, so a job with QA renders the same first take as one without), then a seed of
    its own per take, from the chunk's content hash (another chunk's takes differ)."""
    if take == 0:
        return None
    digest = hashlib.sha256(f"{content_hash}:qa-take:{take}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: any engine's seed type


@dataclass(frozen=True)
class Verdict:
    """One take's verdict: error rate, flags, what was heard, the timed source words
    (seconds in the take's own audio), and how many takes the chunk had when kept."""

    error_rate: float
    flags: tuple[str, ...]
    heard: str = ""
    words: tuple[TimedWord, ...] = ()
    takes: int = 1

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def rank(self) -> tuple[bool, float, int]:
        """Lower is better: a take not flagged, then the lowest error rate, then the
        fewest flags (a clean take with a misheard word beats a cut-off one)."""
        return (self.flagged, self.error_rate, len(self.flags))


@dataclass
class Review:
    """What reviewing one chunk did: the kept take, its verdict, every take's verdict."""

    kept: Any
    verdict: Verdict
    takes: list[Verdict] = field(default_factory=list)


class LiveQa:
    """The recogniser of one process, loaded on first use, shared by its renderers.

    One lock around checking: CTranslate2 already spreads one call over every core,
    so two calls at once only compete."""

    def __init__(self, model_dir: Path | None, *, retries: int) -> None:
        self.model_dir = check_model_dir(model_dir)  # one line now, not at the first chunk
        self.retries = retries
        self._recogniser: Recogniser | None = None
        self._checker: TwoStageChecker | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.model_dir.name

    def load(self) -> Recogniser:
        return self.checker().recogniser

    def checker(self) -> TwoStageChecker:
        with self._lock:
            if self._checker is None:
                self._recogniser = load_recogniser(self.model_dir)
                self._checker = TwoStageChecker(self._recogniser)
            return self._checker

    def check(self, chunks: Sequence[tuple[str, bytes]]) -> list[Verdict]:
        """Judge several chunks' audio (any format PyAV reads) at once.

        They are laid end to end with `GAP_SECONDS` of silence between them and checked
        as one file, as `voicebatch qa` checks a chapter: stage 1 scores each chunk on
        its own; the suspects are then transcribed in one call (Whisper pads every call
        to a 30-second window, so one call per chunk would cost several times the
        recogniser's time). Word times are returned in each chunk's own seconds."""
        if not chunks:
            return []
        gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.float32)
        pieces: list[np.ndarray] = []
        spans: list[Span] = []
        at = 0
        for text, wav in chunks:
            samples = decode(io.BytesIO(wav))
            if pieces:
                pieces.append(gap)
                at += gap.size
            spans.append(Span(text, at / SAMPLE_RATE, (at + samples.size) / SAMPLE_RATE))
            pieces.append(samples)
            at += samples.size
        audio = np.concatenate(pieces)
        checker = self.checker()
        with self._lock:
            checks = checker.check(spans, audio)
        return [
            Verdict(
                round(check.error_rate, 4),
                tuple(check.flags),
                check.heard,
                tuple(
                    TimedWord(w.text, _within(w.start, span), _within(w.end, span))
                    for w in check.words
                ),
            )
            for check, span in zip(checks, spans, strict=True)
        ]

    def review(
        self,
        firsts: Sequence[tuple[str, T]],
        *,
        audio_of: Callable[[T], bytes],
        retake: Callable[[list[int], int], list[T | BaseException]],
    ) -> list[Review]:
        """Check each (text, first take); while a chunk's best take so far is flagged and
        takes are left, render another of every such chunk at once (`retake(indexes, n)`,
        n from 1) and check them. Each chunk keeps its best take (`Verdict.rank`: not
        flagged, then the lowest error rate; the earlier one on a tie). A take that fails
        to render ends that chunk's takes: it keeps its best so far."""
        texts = [text for text, _ in firsts]
        kept = [audio for _, audio in firsts]
        takes = [
            [v] for v in self.check([(t, audio_of(a)) for t, a in zip(texts, kept, strict=True)])
        ]
        best = [chunk[0] for chunk in takes]
        ended: set[int] = set()
        for take in range(1, self.retries + 1):
            todo = [i for i, v in enumerate(best) if v.flagged and i not in ended]
            if not todo:
                break
            made: list[tuple[int, T]] = []
            for i, audio in zip(todo, retake(todo, take), strict=True):
                if isinstance(audio, BaseException):  # the chunk is listed, not failed
                    log.warning("QA re-take %d of %r failed: %s", take, texts[i][:60], audio)
                    ended.add(i)
                else:
                    made.append((i, audio))
            checked = self.check([(texts[i], audio_of(audio)) for i, audio in made])
            for (i, audio), verdict in zip(made, checked, strict=True):
                takes[i].append(verdict)
                if verdict.rank() < best[i].rank():
                    kept[i], best[i] = audio, verdict
        return [
            Review(kept[i], replace(best[i], takes=len(takes[i])), takes[i])
            for i in range(len(firsts))
        ]


def _within(seconds: float, span: Span) -> float:
    """A file time as seconds in the span's own chunk, to the millisecond, inside it."""
    return min(max(round(seconds - span.start, 3), 0.0), span.end - span.start)


def verdict_columns(verdict: Verdict) -> dict[str, Any]:
    """A verdict as the chunk row holds it (pipeline.state.verdicts)."""
    return {
        "qa_error_rate": verdict.error_rate,
        "qa_flags": ",".join(verdict.flags),
        "qa_takes": verdict.takes,
        "qa_words": [{"text": w.text, "start": w.start, "end": w.end} for w in verdict.words],
    }
