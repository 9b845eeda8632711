"""Two-stage QA on real speech: Piper renders checked by the tiny.en Whisper model.

Stage 1 (the forced pass) must pass clean chunks with their word times and without
decoding anything; every planted defect must reach stage 2, which names it; stage 2
decodes the suspects only, in one call."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.process import to_wav_bytes
from pipeline.qa.asr import SAMPLE_RATE, Recogniser, decode, load_recogniser
from pipeline.qa.check import Span
from pipeline.qa.live import LiveQa
from pipeline.qa.twostage import TwoStageChecker
from tests.support.asr import asr_model_dir

TEXTS = [
    "The Fox and the Grapes",
    "A famished fox saw some clusters of ripe black grapes hanging from a trellised vine.",
    "She resorted to all her tricks to get at them, but wearied herself in vain.",
    "At last she turned away, hiding her disappointment and saying that they were sour.",
    "The hare laughed at the short feet and slow pace of the tortoise all morning.",
    "The tortoise replied that she would beat the hare in a race to the old mill.",
    "On the day of the race the two started together from the gate by the road.",
]
GAP = 0.5  # seconds of silence between chunks in a file


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    """Each text said by the bundled Piper voice, at 16 kHz."""
    pytest.importorskip("piper")
    from pipeline.engines.base import SynthesisRequest
    from pipeline.engines.piper import PiperEngine

    engine = PiperEngine()
    results = engine.render_batch(
        [SynthesisRequest(text=t, voice=engine.default_voice, params={}) for t in TEXTS]
    )
    return [decode(io.BytesIO(to_wav_bytes(r.audio, r.sample_rate))) for r in results]


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    return load_recogniser(asr_model_dir())


def lay_out(pieces: list[np.ndarray]) -> tuple[list[Span], np.ndarray]:
    """The pieces as one file, GAP apart, with each chunk's span (its text by position)."""
    gap = np.zeros(int(GAP * SAMPLE_RATE), np.float32)
    out: list[np.ndarray] = []
    spans: list[Span] = []
    at = 0
    for text, piece in zip(TEXTS, pieces, strict=True):
        spans.append(Span(text, at / SAMPLE_RATE, (at + piece.size) / SAMPLE_RATE))
        out += [piece, gap]
        at += piece.size + gap.size
    return spans, np.concatenate(out)


def quietest(piece: np.ndarray, near: float) -> int:
    """The quietest 20 ms within 20% of the length around `near` (a gap between words)."""
    window = int(0.02 * SAMPLE_RATE)
    lo, hi = int(piece.size * (near - 0.2)), int(piece.size * (near + 0.2))
    energy = [float(np.mean(piece[i : i + window] ** 2)) for i in range(lo, hi, window // 2)]
    return lo + int(np.argmin(energy)) * (window // 2)


def test_a_clean_file_passes_in_stage_1_with_word_times_and_decodes_nothing(
    speech: list[np.ndarray], recogniser: Recogniser
) -> None:
    spans, samples = lay_out(speech)
    before = recogniser.decodes
    checker = TwoStageChecker(recogniser)
    checks = checker.check(spans, samples)
    assert recogniser.decodes == before  # nothing decoded: stage 2 never ran
    assert checker.stats.suspects == 0 and checker.stats.stage2_seconds == 0.0
    assert [c.flags for c in checks] == [[]] * len(TEXTS)
    assert all(c.stage == 1 for c in checks)
    for check, span in zip(checks, spans, strict=True):
        source = span.text.split()
        assert [w.text for w in check.words] == source[: len(check.words)]
        assert len(check.words) >= 0.95 * len(source)
        starts = [w.start for w in check.words]
        assert starts == sorted(starts)
        assert all(span.start <= w.start <= w.end <= span.end for w in check.words)
    first = checks[1].words[1]  # "famished", about 0.2-0.8 s into its chunk
    assert spans[1].start + 0.05 < first.start < spans[1].start + 1.0


def test_each_planted_defect_reaches_stage_2_and_is_flagged_in_one_decoding(
    speech: list[np.ndarray], recogniser: Recogniser
) -> None:
    pieces = list(speech)
    pieces[1] = np.zeros_like(pieces[1])  # silenced
    pieces[2] = pieces[2][: quietest(pieces[2], 0.5)]  # cut to its first half
    phrase = pieces[3][: quietest(pieces[3], 0.35)]
    pieces[3] = np.concatenate([phrase, np.zeros(SAMPLE_RATE // 5, np.float32), pieces[3]])
    pieces[4], pieces[5] = pieces[5], pieces[4]  # swapped
    spans, samples = lay_out(pieces)
    before = recogniser.decodes
    checker = TwoStageChecker(recogniser)
    checks = checker.check(spans, samples)
    assert recogniser.decodes == before + 1  # the suspects, decoded together
    assert [c.stage for c in checks] == [1, 2, 2, 2, 2, 2, 1]
    assert checks[0].flags == [] and checks[6].flags == []
    assert checks[1].flags == ["silence"]
    assert checks[2].flags in (["cut_off"], ["missing_words"])  # its second half is gone
    assert {"repeated_words", "invented_words"} & set(checks[3].flags)
    assert checks[4].flags and checks[5].flags
    for check, span in zip(checks, spans, strict=True):  # stage 2's times are the file's
        assert all(span.start <= w.start <= w.end <= span.end for w in check.words)
    assert checker.stats.suspects == 5 and checker.stats.stage2_seconds > 0


def test_live_qa_checks_a_batch_in_two_stages(speech: list[np.ndarray], tmp_path: Path) -> None:
    live = LiveQa(asr_model_dir(), retries=0)
    wavs = [to_wav_bytes(piece, SAMPLE_RATE) for piece in speech[:4]]
    wavs[2] = to_wav_bytes(speech[2][: quietest(speech[2], 0.5)], SAMPLE_RATE)
    verdicts = live.check(list(zip(TEXTS[:4], wavs, strict=True)))
    assert live.load().decodes == 1  # the cut chunk alone was decoded
    assert [v.flagged for v in verdicts] == [False, False, True, False]
    assert "cut_off" in verdicts[2].flags
    words = verdicts[1].words  # in the chunk's own seconds
    assert [w.text for w in words] == TEXTS[1].split()
    assert 0 <= words[0].start < words[-1].end <= speech[1].size / SAMPLE_RATE
