"""Prometheus metrics of `POST /v1/audio/speech`, as the API process observes them (served
with the API's other metrics, api.metrics). Labels stay bounded: the engine, the response
format (one of six) and the outcome."""

from __future__ import annotations

import functools
import time

from prometheus_client import Counter, Histogram

OUTCOMES = ("ok", "error", "client_gone", "no_worker")

SPEECH_REQUESTS = Counter(
    "voicebatch_speech_requests_total",
    "Speech requests that passed their checks, by engine, response format and outcome (ok: "
    "the whole audio sent; error: the worker failed; client_gone: the client left first; "
    "no_worker: no worker answered within VOICEBATCH_SPEECH_WAIT_SECONDS).",
    ["engine", "format", "outcome"],
)
SPEECH_TTFB = Histogram(
    "voicebatch_speech_ttfb_seconds",
    "A speech request's time to first audio byte: request received to its first audio "
    "byte written.",
    ["engine"],
    buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
)


class SpeechObservation:
    """One request's clock and labels: its first byte observed once, its outcome counted
    once."""

    def __init__(self, engine: str, fmt: str, received: float) -> None:
        self.engine = engine
        self.format = fmt
        self.received = received
        self._first_byte = False
        self._counted = False

    def first_byte(self) -> None:
        if not self._first_byte:
            self._first_byte = True
            SPEECH_TTFB.labels(self.engine).observe(time.perf_counter() - self.received)

    def outcome(self, outcome: str) -> None:
        if not self._counted:
            self._counted = True
            SPEECH_REQUESTS.labels(self.engine, self.format, outcome).inc()


@functools.cache
def prepare_speech_metrics(engine: str, formats: tuple[str, ...]) -> None:
    """The series at 0 from the first speech request on (once per engine): a counter that
    appears at its first value shows no increase to rate()."""
    SPEECH_TTFB.labels(engine)
    for fmt in formats:
        for outcome in OUTCOMES:
            SPEECH_REQUESTS.labels(engine, fmt, outcome)
