"""Loudness normalisation and true-peak limiting over a stream of segments.

A book is never held in memory whole: it is a sequence of segments (chunk audio, or a
run of silence), read in order as many times as mastering needs. Loudness follows
ITU-R BS.1770-4 (K-weighting, 400 ms blocks every 100 ms, absolute and relative gates),
accumulated at the block boundaries as the stream goes by. The limiter works chunk by
chunk: chunks begin and end in trimmed, faded near-silence and are separated by pauses,
so per-chunk limiting gives the samples whole-book limiting would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.audio.dsp import k_weighting, min_then_mean, sosfilt, upsample4
from pipeline.engines.base import AudioArray

BLOCK_SECONDS = 0.4
BLOCK_STEP = 0.25  # 75% overlap
ABSOLUTE_GATE = -70.0


def oversampled_peaks(audio: AudioArray) -> npt.NDArray[np.float32]:
    """Per sample, the largest magnitude among its 4x-oversampled points (BS.1770-4 true peak)."""
    if audio.size == 0:
        return np.zeros(0, np.float32)
    phases = np.abs(upsample4(audio).astype(np.float32, copy=False)).reshape(-1, 4)
    # Column-wise maxima: several times faster than .max(axis=1) on a (n, 4) array.
    return np.maximum(
        np.maximum(phases[:, 0], phases[:, 1]), np.maximum(phases[:, 2], phases[:, 3])
    )


@dataclass(frozen=True)
class Segment:
    """`length` samples of the book starting at `start`: audio from `load`, or silence."""

    start: int
    length: int
    load: Callable[[], AudioArray] | None = None
    # oversampled_peaks(audio) of the loaded audio, cached by whoever can cache it
    peaks: Callable[[AudioArray], npt.NDArray[np.float32]] = oversampled_peaks

    def audio_and_peaks(self) -> tuple[AudioArray, npt.NDArray[np.float32]]:
        assert self.load is not None
        audio = self.load()
        return audio, self.peaks(audio)

    @property
    def silent(self) -> bool:
        return self.load is None


# The level recorded for digital silence (and the floor of any level): finite, because
# levels go into JSON (manifests, the database), which has no infinities, and far below
# anything audible.
SILENCE_DB = -120.0


def _db(value: float) -> float:
    return max(SILENCE_DB, float(20 * np.log10(value))) if value > 0 else SILENCE_DB


def _block_bounds(samples: int, rate: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Lower and upper sample bounds of each gating block, as pyloudnorm computes them."""
    blocks = round((samples / rate - BLOCK_SECONDS) / (BLOCK_SECONDS * BLOCK_STEP)) + 1
    if samples < BLOCK_SECONDS * rate or blocks < 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = np.arange(blocks)
    lower = (BLOCK_SECONDS * index * BLOCK_STEP * rate).astype(np.int64)
    upper = (BLOCK_SECONDS * (index * BLOCK_STEP + 1) * rate).astype(np.int64)
    return lower, np.minimum(upper, samples)


def gated_loudness(z: npt.NDArray[np.float64]) -> float:
    """BS.1770-4 integrated loudness from the mean squares of 400 ms blocks (gated)."""
    if z.size == 0:
        return float("-inf")
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(z)
    above = loudness >= ABSOLUTE_GATE
    if not above.any():
        return float("-inf")
    relative = -0.691 + 10 * np.log10(z[above].mean()) - 10.0
    final = z[above & (loudness > relative)]
    return float(-0.691 + 10 * np.log10(final.mean())) if final.size else float("-inf")


class LoudnessAccumulator:
    """Integrated loudness of a signal fed in consecutive pieces (BS.1770-4, mono).

    Same K-weighting filters, block layout and gating as pyloudnorm (tests hold the two
    within 0.01 LU); memory is one float per 100 ms, whatever the length.
    """

    def __init__(self, sample_rate: int, total_samples: int) -> None:
        self.rate = sample_rate
        self.sos = k_weighting(sample_rate).astype(np.float32)
        self.state = np.zeros((len(self.sos), 2), np.float32)
        self.lower, self.upper = _block_bounds(total_samples, sample_rate)
        self.bounds = np.unique(np.concatenate([[0], self.lower, self.upper]))
        self.totals = np.zeros(len(self.bounds))  # cumulative power at each bound
        self.position = 0
        self.running = 0.0
        self.squares = 0.0  # unweighted, for RMS

    def feed(self, audio: npt.NDArray[np.floating]) -> None:
        if len(audio) == 0:
            return
        # float32 filtering: 4-5x faster than float64, and within 4e-5 dB of it per
        # block (tests hold both); sums are taken in float64.
        samples = np.asarray(audio, dtype=np.float32)
        self.squares += float(np.dot(samples, samples))
        weighted, self.state = sosfilt(self.sos, samples, zi=self.state)
        self._add_power(np.square(weighted, out=weighted))

    def _add_power(self, power: npt.NDArray[np.floating]) -> None:
        """Record the running power total at every block bound inside the next samples:
        sums between bounds (one pass, no cumulative array of the piece's length)."""
        end = self.position + len(power)
        first, last = np.searchsorted(self.bounds, [self.position, end], side="right")
        # bounds strictly after the current position: offsets 1..len(power)
        offsets = self.bounds[first:last] - self.position
        inner = offsets[offsets < len(power)]
        parts = np.add.reduceat(power, np.concatenate(([0], inner)), dtype=np.float64)
        running = self.running + np.cumsum(parts)
        # running[j] is the total up to inner[j] (j < len(inner)), and running[-1] the
        # total up to the piece's end
        self.totals[first : first + len(inner)] = running[: len(inner)]
        if len(inner) < len(offsets):
            self.totals[first + len(inner)] = running[-1]
        self.running = float(running[-1])
        self.position = end

    def feed_silence(self, samples: int) -> None:
        """Digital silence: the filters ring out over the first 16384 samples (by then
        their state has fallen by over 13 orders of magnitude even at 96 kHz, by over 70
        at 22.05 kHz); the rest adds no power."""
        ring = min(samples, 16384)
        if ring:
            self.feed(np.zeros(ring, np.float32))
        rest = samples - ring
        if rest:
            self.state = np.zeros_like(self.state)
            self._skip(rest)

    def _skip(self, samples: int) -> None:
        end = self.position + samples
        first, last = np.searchsorted(self.bounds, [self.position, end], side="right")
        self.totals[first:last] = self.running
        self.position = end

    def integrated(self) -> float:
        at = np.searchsorted(self.bounds, [self.lower, self.upper])
        z = (self.totals[at[1]] - self.totals[at[0]]) / (BLOCK_SECONDS * self.rate)
        return gated_loudness(z)

    def level(self) -> float:
        """The loudness mastering aims at, always finite: the BS.1770 integrated loudness
        where the gates keep a block; for a clip shorter than one 400 ms block, or one
        the gates leave nothing of, its loudness over its whole length (the same formula,
        one ungated block); SILENCE_DB for digital silence."""
        gated = self.integrated()
        if np.isfinite(gated):
            return gated
        if self.position == 0 or self.running <= 0:
            return SILENCE_DB
        return max(SILENCE_DB, float(-0.691 + 10 * np.log10(self.running / self.position)))

    def rms_db(self) -> float:
        """Plain (unweighted) RMS of everything fed so far, in dBFS (a full-scale sine
        is -3 dB): the level ACX measures. SILENCE_DB for silence."""
        if self.position == 0 or self.squares <= 0:
            return SILENCE_DB
        return max(SILENCE_DB, float(10 * np.log10(self.squares / self.position)))

    def loudness_range(self) -> float | None:
        """EBU Tech 3342 loudness range (LU) of what was fed: the spread between the 10th
        and 95th percentiles of 3 s short-term loudness taken every 100 ms, gated at
        -70 LUFS and 20 LU under their mean. None for audio under 3 s."""
        at = np.searchsorted(self.bounds, self.lower)
        steps = round(3.0 / (BLOCK_SECONDS * BLOCK_STEP))
        if len(at) <= steps:
            return None
        energy = (self.totals[at[steps:]] - self.totals[at[:-steps]]) / (
            self.lower[steps:] - self.lower[:-steps]
        )
        return loudness_range(energy)


def loudness_range(energy: npt.NDArray[np.float64]) -> float | None:
    """LRA from short-term mean-square energies (EBU Tech 3342 gating and percentiles)."""
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(energy)
    kept = energy[levels >= ABSOLUTE_GATE]
    if kept.size == 0:
        return None
    relative = -0.691 + 10 * np.log10(kept.mean()) - 20.0
    gated = levels[(levels >= ABSOLUTE_GATE) & (levels >= relative)]
    if gated.size == 0:
        return None
    low, high = np.percentile(gated, [10, 95])
    return float(high - low)


def integrated_loudness(audio: AudioArray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness of a whole array; -inf if shorter than 0.4 s or silent."""
    accumulator = LoudnessAccumulator(sample_rate, len(audio))
    accumulator.feed(audio)
    return accumulator.integrated()


def limiter_gain(
    over: npt.NDArray[np.float32], sample_rate: int, ceiling: float
) -> npt.NDArray[np.float32]:
    """A look-ahead peak limiter's gain curve for oversampled peaks `over`.

    The gain each sample needs is min-filtered over two windows and averaged over one,
    which keeps the smoothed gain at or below the needed gain everywhere (no overs) while
    ramping over ~5 ms instead of clipping.
    """
    window = max(3, int(sample_rate * 0.005)) | 1
    need = np.minimum(np.float32(1.0), np.float32(ceiling) / np.maximum(over, np.float32(1e-12)))
    return min_then_mean(need, 2 * window, window)


@dataclass(frozen=True)
class Mastering:
    """The gain (and whether to limit) that brings a stream to its loudness target."""

    sample_rate: int
    gain: float
    ceiling: float
    limited: bool
    input_lufs: float  # the level before and after, in the measure's unit (LUFS or dB RMS)
    output_lufs: float
    true_peak_dbtp: float
    measure: str = "lufs"  # "lufs" (BS.1770 integrated) or "rms" (ACX)

    @property
    def gain_db(self) -> float:
        return _db(self.gain)

    def apply(self, audio: AudioArray, peaks: npt.NDArray[np.float32] | None = None) -> AudioArray:
        """This segment's finished samples: the same whichever file it ends up in."""
        return self.process(audio, peaks)[0]

    def process(
        self, audio: AudioArray, peaks: npt.NDArray[np.float32] | None = None
    ) -> tuple[AudioArray, float]:
        """Finished samples and their true peak as the limiter sees it (linear).

        `peaks` is oversampled_peaks(audio), when the caller has it already.
        """
        if audio.size == 0:
            return audio.astype(np.float32), 0.0
        gain = np.float32(self.gain)
        if not self.limited:
            return (audio * gain).astype(np.float32), 0.0
        over = (oversampled_peaks(audio) if peaks is None else peaks) * gain
        curve = limiter_gain(over, self.sample_rate, self.ceiling)
        return (audio * gain * curve).astype(np.float32), float(np.max(over * curve))


def _pieces(
    segments: Iterable[Segment],
) -> Iterable[tuple[Segment, tuple[AudioArray, npt.NDArray[np.float32]] | None]]:
    for segment in segments:
        yield segment, None if segment.load is None else segment.audio_and_peaks()


def _measure_pass(
    segments: Sequence[Segment],
    sample_rate: int,
    total: int,
    plan: Mastering | None,
    measure: str = "lufs",
) -> tuple[float, float]:
    """One pass over the stream: its level (integrated loudness, or RMS) and true peak
    (linear), as it is (plan None) or as `plan` masters it."""
    meter = LoudnessAccumulator(sample_rate, total)
    peak = 0.0
    for segment, loaded in _pieces(segments):
        if loaded is None:
            meter.feed_silence(segment.length)
            continue
        audio, over = loaded
        if plan is None:
            out, out_peak = audio, float(over.max()) if audio.size else 0.0
        else:
            out, out_peak = plan.process(audio, over)
        meter.feed(out)
        peak = max(peak, out_peak)
    return (meter.rms_db() if measure == "rms" else meter.level()), peak


def plan_mastering(
    segments: Sequence[Segment],
    sample_rate: int,
    *,
    target_lufs: float,
    ceiling_dbtp: float,
    measure: str = "lufs",
) -> Mastering:
    """Measure the stream, choose a gain for `target_lufs`, and limit peaks under `ceiling_dbtp`.

    `measure` "rms" aims the plain RMS of the whole stream (silence included) at the
    target in dBFS instead of its integrated loudness, as ACX measures files.

    Limiting lowers loudness, so the gain is raised and the stream measured again (at
    most six limited passes) until the result is within 0.2 LU of the target. Audio too
    short for the gates is measured over its whole length; audio at or under -70 (silence,
    noise) is only peak-limited. Every level it returns is finite (see SILENCE_DB).

    Segments are limited one at a time, which equals limiting the whole stream only when
    audio segments start and end near silence: the pipeline's chunks are trimmed with
    5 ms fades, so they do.
    """
    total = sum(s.length for s in segments)
    ceiling = 10 ** ((ceiling_dbtp - 0.1) / 20)  # 0.1 dB margin for the oversampling estimate
    before, peak = _measure_pass(segments, sample_rate, total, None, measure)
    # Audio at or under the absolute gate (-70) is silence or noise: never raised.
    measurable = before > ABSOLUTE_GATE
    gain = 10 ** ((target_lufs - before) / 20) if measurable else 1.0
    if peak * gain <= ceiling:
        after = before + _db(gain) if measurable else before
        return Mastering(
            sample_rate, gain, ceiling, False, before, after, _db(peak * gain), measure
        )

    # Limiting takes back part of any gain added, so loudness rises less than 1 dB per dB
    # of gain: step by the slope measured between passes (secant), up to six passes.
    tried: list[tuple[float, float]] = []  # (gain in dB, loudness measured)
    for attempt in range(6):
        plan = Mastering(sample_rate, gain, ceiling, True, before, before, 0.0, measure)
        after, limited_peak = _measure_pass(segments, sample_rate, total, plan, measure)
        tried.append((_db(gain), after))
        if not measurable or abs(after - target_lufs) <= 0.2 or attempt == 5:
            break
        slope = 1.0
        if len(tried) > 1 and tried[-1][0] != tried[-2][0]:
            slope = (tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0])
            slope = min(1.0, max(0.2, slope))
        gain *= 10 ** ((target_lufs - after) / slope / 20)
    # The limiter's own estimate (oversampled peaks times its gain curve) of the output's
    # true peak; tests measure the output independently.
    return Mastering(sample_rate, gain, ceiling, True, before, after, _db(limited_peak), measure)


def normalize_loudness(
    audio: AudioArray, sample_rate: int, *, target_lufs: float, ceiling_dbtp: float
) -> tuple[AudioArray, Mastering]:
    """plan_mastering + apply for audio already in memory (one segment)."""
    segment = Segment(0, len(audio), lambda: audio)
    plan = plan_mastering(
        [segment], sample_rate, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp
    )
    return plan.apply(audio), plan
