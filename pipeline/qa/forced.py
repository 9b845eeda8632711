"""Stage 1 of QA: scoring each chunk against the text it should say, without decoding.

The recogniser is not asked what it hears; it is told what should have been said and
asked how likely that is (teacher forcing, CTranslate2's `Whisper.align`). Each chunk's
audio is encoded on its own, at its own length: Whisper's encoder costs far less for a
short input than for the 30-second window it pads to when it decodes (on two cores,
8 s of audio encodes in under a tenth of the time of a padded window), and one chunk per
call gives each chunk its own scores. The forced pass gives:

- each source word's probability (the mean of its tokens'), and its times, from the
  dynamic time warping of the alignment heads that faster-whisper's word timestamps use
  (`WhisperModel.find_alignment`; redone here so that the words are the source's own,
  split on white space, rather than the tokenizer's);
- signs of trouble: a low mean log-probability, over the chunk or over a few words in a
  row (words missing, cut off, swapped or invented, speech unintelligible), speech the words' own pace and pauses do not account
  for (the warping lays extra speech, a repeated phrase, over one word or a few), a span
  quieter than speech (silence), and a chunk longer than its text reads at the file's
  speaking rate. The end-of-text token's probability after the forced text was measured
  too, for speech after the text: tiny.en gives it about 0 for clean and faulty chunks
  alike, so it is not used.

A chunk with none of these is passed with its word times; the others are suspects that
stage 2 decodes freely (`pipeline.qa.twostage`).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.qa.check import SILENCE_DBFS, Span, TimedWord, rms_dbfs
from pipeline.qa.words import split_words

_PAUSES = frozenset(",;:.!?\"')\u201d\u2019\u2014-")
SAMPLE_RATE = 16_000
TOKENS_PER_SECOND = 50  # the encoder's output frames per second of audio
PAD_SECONDS = 0.2  # silence after a chunk: its last word gets room to end
# A short chunk (a title) is padded with silence to this length: alone, 1-2 s of speech
# now and then leaves the encoder lost (a clean "The Fox and the Grapes" scored a mean
# log-probability of -8 in 7 renders of 36 at 1.5 s; padded to 6 s, 0 of 48 fell below
# -2). Longer chunks are left as they are.
MIN_INPUT_SECONDS = 6.0
MAX_SECONDS = 29.5  # Whisper's encoder holds 30 s: a longer chunk goes to stage 2 whole
MAX_TOKENS = 400  # the decoder's context is 448 tokens, the prompt included
# chunks scored at once, each on one of the model's replicas (CTranslate2 inter_threads,
# faster-whisper's num_workers): on two cores, 1.2x stage 1's speed with each replica's
# threads unchanged, so that stage 2's single decode still uses every core
WORKERS = 2

# How sure the forced pass must be of a chunk to pass it without decoding. Measured on
# Piper renders with tiny.en (bench/bench_qa.py): clean chunks score a mean token
# log-probability above -1.8 (titles lowest), cut or swapped ones below -2.6; a repeated
# phrase leaves a second or more of speech unexplained (`_unexplained`), where a clean
# chunk leaves 0.4 s (short chunks) to 1.3 s (400 characters).
MEAN_LOGPROB_LIMIT = -2.0
# and over any RUN_WORDS words in a row (a cut ending or a few words missing, which the
# chunk's mean hides): clean chunks' worst run scores above -3.3, cut ones below -6.5
RUN_WORDS = 5
RUN_LOGPROB_LIMIT = -4.5
# seconds of speech the words' own pace and pauses may leave unexplained, per chunk and
# per character of its text (a long chunk gathers more small overruns)
STRETCH_LIMIT = 0.5
STRETCH_PER_CHAR = 0.003
PAUSE_SECONDS = 0.45  # a word before a punctuation mark may run this far over (a pause)
SLACK_SECONDS = 0.1  # and any other word this far
RATE_LIMIT = 1.3  # a chunk this much longer than its text reads at the file's rate
DOUBTFUL = 0.1  # a word the recogniser gives less than this counts as an error


@dataclass
class ChunkScore:
    """Stage 1's view of one chunk: its scores, its timed source words, and why (if at
    all) it is a suspect."""

    index: int
    words: list[TimedWord] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)  # per source word
    mean_logprob: float = 0.0
    stretch: float = 0.0  # seconds the words' pace and pauses leave unexplained
    level: float = -120.0  # dBFS of the span
    seconds_per_char: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)


class ForcedAligner:
    """Teacher-forced scoring with a loaded faster-whisper model (`Recogniser.model`)."""

    def __init__(self, model: Any, language: str | None) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.model = model
        self.tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=language or "en",
        )
        # without timestamps: the text is forced as plain text
        self.prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]

    def score(self, spans: list[Span], samples: np.ndarray) -> list[ChunkScore]:
        """Score every chunk of a file whose 16 kHz samples are `samples` (see the module
        docstring); the speaking-rate check compares chunks of this file."""
        # Two chunks at a time, one on each of the model's workers (`WORKERS`): a chunk
        # is too short for the encoder to spread well over the cores by itself.
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="qa-score") as pool:
            scores = list(
                pool.map(
                    lambda i, span: self._score_one(i, span, samples), range(len(spans)), spans
                )
            )
        _judge_rate(scores, spans)
        return scores

    def _score_one(self, index: int, span: Span, samples: np.ndarray) -> ChunkScore:
        audio = samples[int(span.start * SAMPLE_RATE) : int(span.end * SAMPLE_RATE)]
        score = ChunkScore(index, level=rms_dbfs(audio))
        words = split_words(span.text)
        pieces = [self.tokenizer.encode(" " + word) for word in words]
        tokens = [t for piece in pieces for t in piece]
        if not tokens:
            return score  # nothing to say: check_file passes it too
        if score.level < SILENCE_DBFS:
            score.reasons.append("quiet")
            return score
        if audio.size > MAX_SECONDS * SAMPLE_RATE or len(tokens) > MAX_TOKENS:
            score.reasons.append("long")
            return score
        probabilities, starts, ends = self._force(pieces, audio)
        score.mean_logprob = float(np.mean(np.log(np.maximum(probabilities, 1e-6))))
        bounds = np.cumsum([0] + [len(p) for p in pieces])
        score.probabilities = [
            float(np.mean(probabilities[a:b])) if b > a else 1.0
            for a, b in itertools.pairwise(bounds)
        ]
        length = max(audio.size / SAMPLE_RATE, 1e-3)
        letters = sum(len(w) for w in words)
        score.seconds_per_char = length / max(1, letters)
        score.stretch = _unexplained(words, starts, ends)
        score.words = [
            TimedWord(word, _inside(span, s), _inside(span, max(s, e)))
            for word, s, e, n in zip(words, starts, ends, pieces, strict=True)
            if n
        ]
        if score.mean_logprob < MEAN_LOGPROB_LIMIT:
            score.reasons.append("unlikely")
        if _worst_run(score.probabilities) < RUN_LOGPROB_LIMIT:
            score.reasons.append("gap")
        if score.stretch > stretch_limit(span.text):
            score.reasons.append("stretched")
        return score

    def _force(
        self, pieces: list[list[int]], audio: np.ndarray
    ) -> tuple[np.ndarray, list[float], list[float]]:
        """One forced pass: each token's probability, each word's start and end."""
        tokens = [t for piece in pieces for t in piece]
        pad = max(PAD_SECONDS, MIN_INPUT_SECONDS - audio.size / SAMPLE_RATE)
        padded = np.concatenate([audio, np.zeros(int(pad * SAMPLE_RATE), np.float32)])
        features = self.model.feature_extractor(padded)
        frames = int(features.shape[-1])
        encoded = self.model.encode(features)
        result = self.model.model.align(encoded, self.prompt, [tokens], frames)[0]
        probabilities = np.asarray(result.text_token_probs[: len(tokens)], dtype=np.float64)
        starts, ends = _word_times(result.alignments, [len(p) for p in pieces])
        # the warping may lay the last word over the padding: it is not speech
        limit = audio.size / SAMPLE_RATE + PAD_SECONDS
        return probabilities, [min(s, limit) for s in starts], [min(e, limit) for e in ends]


def stretch_limit(text: str) -> float:
    """The unexplained seconds a chunk saying `text` may have and still pass."""
    return STRETCH_LIMIT + STRETCH_PER_CHAR * len(text)


def _worst_run(probabilities: list[float]) -> float:
    """The lowest mean log-probability of `RUN_WORDS` words in a row (fewer: all)."""
    if not probabilities:
        return 0.0
    logs = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), 1e-6))
    width = min(RUN_WORDS, logs.size)
    return float(np.min(np.convolve(logs, np.ones(width) / width, mode="valid")))


def _inside(span: Span, seconds: float) -> float:
    """A time in the chunk (seconds from its start) as file seconds, to the millisecond,
    inside its span."""
    return min(max(round(span.start + seconds, 3), span.start), span.end)


def _unexplained(words: list[str], starts: list[float], ends: list[float]) -> float:
    """Seconds of the chunk its words do not account for: each word is given its letters
    at the chunk's median pace per letter, plus a pause where punctuation ends it; what
    runs over is summed. Extra speech (a repeated phrase) makes the warping stretch one
    word or spread over a few; either way it shows here, where a slow voice does not."""
    durations = np.asarray(ends) - np.asarray(starts)
    letters = np.asarray([max(1, sum(c.isalnum() for c in w)) for w in words], dtype=np.float64)
    pace = float(np.median(durations / letters))
    allowed = np.asarray(
        [PAUSE_SECONDS if w[-1] in _PAUSES else SLACK_SECONDS for w in words], dtype=np.float64
    )
    return float(np.sum(np.maximum(0.0, durations - pace * letters - allowed)))


def _word_times(
    alignments: list[tuple[int, int]], counts: list[int]
) -> tuple[list[float], list[float]]:
    """Each word's start and end (seconds) from the alignment path, as faster-whisper's
    `find_alignment` reads it: a token starts where the path first reaches it."""
    path = np.asarray(alignments, dtype=np.int64).reshape(-1, 2)
    text_indices, time_indices = path[:, 0], path[:, 1]
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    total = sum(counts)
    # the path reaches every text token once, then the end: pad if it stopped short
    if jump_times.size < total + 1:
        last = float(time_indices[-1]) / TOKENS_PER_SECOND if time_indices.size else 0.0
        jump_times = np.pad(jump_times, (0, total + 1 - jump_times.size), constant_values=last)
    bounds = np.cumsum([0, *counts])
    starts = [float(jump_times[a]) for a in bounds[:-1]]
    ends = [
        float(jump_times[b]) if b > a else float(jump_times[a])
        for a, b in itertools.pairwise(bounds)
    ]
    return starts, ends


def _judge_rate(scores: list[ChunkScore], spans: list[Span]) -> None:
    """Mark chunks that last much longer than their text reads at this file's median
    rate (extra speech the forced pass may have squeezed in). Needs a few chunks to
    know the rate; short chunks (titles: a pause is most of them) are left out."""
    rated = [s for s in scores if s.seconds_per_char > 0 and not s.suspect]
    long_enough = [s for s in rated if len(spans[s.index].text) >= 40]
    if len(long_enough) < 3:
        return
    median = float(np.median([s.seconds_per_char for s in long_enough]))
    for s in long_enough:
        if s.seconds_per_char > RATE_LIMIT * median:
            s.reasons.append("slow")
