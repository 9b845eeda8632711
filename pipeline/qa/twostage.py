"""QA in two stages, for `voicebatch qa` and QA while rendering alike.

1. Every chunk is scored against its own text with one teacher-forced pass
   (`pipeline.qa.forced`): cheap, since nothing is decoded. A chunk the recogniser finds
   likely, with no stretched word and no silence, passes with the word times of the
   forced alignment (source words, in order, inside the chunk's span).
2. The suspects alone are decoded freely: their audio laid end to end with a second of
   silence between them, transcribed, and judged by `check_file`, which names what is
   wrong (silence, noise, cut_off, missing, repeated or invented words, unintelligible)
   or passes a chunk stage 1 was only unsure of; a chunk with far more speech than its
   words account for stays flagged (`EXTRA_SPEECH_FACTOR`).

Stage 1 is set to be sensitive (every planted defect of bench/bench_qa.py is a suspect)
and stage 2 keeps false flags low; on a clean render few chunks reach stage 2, so QA
costs about the forced pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.qa.asr import SAMPLE_RATE, Recogniser
from pipeline.qa.check import ChunkCheck, Span, TimedWord, check_file
from pipeline.qa.forced import DOUBTFUL, ChunkScore, ForcedAligner, stretch_limit
from pipeline.qa.words import split_words, tokens_of

GAP_SECONDS = 1.0  # silence between suspects decoded together, as a paragraph pause
# Free decoding can drop a repeated sentence (Whisper leaves out what it has just said):
# a chunk whose unexplained speech is this many times stage 1's limit stays flagged even
# when its transcript reads right. Clean chunks of bench/bench_qa.py reach 1.2 times.
EXTRA_SPEECH_FACTOR = 2.5


@dataclass
class StageStats:
    """What the checks cost, stage by stage."""

    chunks: int = 0
    suspects: int = 0
    stage1_seconds: float = 0.0
    stage2_seconds: float = 0.0
    stage2_audio_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "suspects": self.suspects,
            "stage1_seconds": round(self.stage1_seconds, 3),
            "stage2_seconds": round(self.stage2_seconds, 3),
            "stage2_audio_seconds": round(self.stage2_audio_seconds, 3),
        }


class TwoStageChecker:
    """Checks files (or batches of chunks laid end to end) with one loaded recogniser."""

    def __init__(self, recogniser: Recogniser) -> None:
        self.recogniser = recogniser
        self.aligner = ForcedAligner(recogniser.model, recogniser.language)
        self.stats = StageStats()

    def check(self, spans: list[Span], samples: np.ndarray) -> list[ChunkCheck]:
        """Judge every chunk of one file of 16 kHz samples (see the module docstring):
        the same results `check_file` gives, for a fraction of the recogniser's time."""
        started = time.perf_counter()
        scores = self.aligner.score(spans, samples)
        checks: list[ChunkCheck | None] = [
            None if score.suspect else passed(i, span, score)
            for i, (span, score) in enumerate(zip(spans, scores, strict=True))
        ]
        self.stats.stage1_seconds += time.perf_counter() - started
        suspects = [i for i, check in enumerate(checks) if check is None]
        self.stats.chunks += len(spans)
        self.stats.suspects += len(suspects)
        if suspects:
            started = time.perf_counter()
            for i, check in zip(suspects, self._decode(spans, suspects, samples), strict=True):
                if not check.flags and scores[i].stretch > EXTRA_SPEECH_FACTOR * stretch_limit(
                    spans[i].text
                ):
                    check.flags = ["invented_words"]  # speech the text does not have
                checks[i] = check
            self.stats.stage2_seconds += time.perf_counter() - started
        return [c for c in checks if c is not None]

    def _decode(self, spans: list[Span], which: list[int], samples: np.ndarray) -> list[ChunkCheck]:
        """Stage 2: the chunks `which`, decoded together and judged by `check_file`, with
        their times put back in the file."""
        gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.float32)
        pieces: list[np.ndarray] = []
        packed: list[Span] = []
        at = 0
        for i in which:
            span = spans[i]
            audio = samples[int(span.start * SAMPLE_RATE) : int(span.end * SAMPLE_RATE)]
            if pieces:
                pieces.append(gap)
                at += gap.size
            packed.append(Span(span.text, at / SAMPLE_RATE, (at + audio.size) / SAMPLE_RATE))
            pieces.append(audio)
            at += audio.size
        audio = np.concatenate(pieces)
        self.stats.stage2_audio_seconds += audio.size / SAMPLE_RATE
        heard = self.recogniser.transcribe(audio)
        out: list[ChunkCheck] = []
        for i, check, place in zip(
            which, check_file(packed, heard, audio, SAMPLE_RATE), packed, strict=True
        ):
            span = spans[i]
            shift = span.start - place.start
            check.index, check.start, check.end, check.stage = i, span.start, span.end, 2
            check.words = [
                TimedWord(w.text, _inside(span, w.start + shift), _inside(span, w.end + shift))
                for w in check.words
            ]
            out.append(check)
        return out


def _inside(span: Span, seconds: float) -> float:
    """File seconds to the millisecond, inside the span."""
    return min(max(round(seconds, 3), span.start), span.end)


def passed(index: int, span: Span, score: ChunkScore) -> ChunkCheck:
    """A chunk stage 1 passed: its words timed by the forced alignment; its errors are
    the compared tokens of the words the recogniser doubted (probability under
    `DOUBTFUL`), the nearest this stage has to words misheard."""
    words = split_words(span.text)
    tokens = tokens_of(words)
    doubted = {i for i, p in enumerate(score.probabilities) if p < DOUBTFUL}
    return ChunkCheck(
        index,
        span.start,
        span.end,
        span.text,
        len(tokens),
        sum(1 for t in tokens if t.word in doubted),
        words=list(score.words),
        word_count=len(words),
        stage=1,
    )
