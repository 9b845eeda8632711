"""The dynamic batcher, driven by a two-stage engine built for these tests (the batcher is
generic; the Maya1 engine's own tests drive it with the real model)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipeline.batching import (
    BatcherClosed,
    BatchingEngine,
    DynamicBatcher,
    length_bucket,
    with_batching,
)
from pipeline.config import load_settings
from pipeline.engines import create_engine
from pipeline.engines.base import StagedEngine, SynthesisRequest, SynthesisResult
from pipeline.errors import EngineOutOfMemory


@dataclass
class Call:
    stage: str
    texts: list[str]
    start: float
    end: float


@dataclass
class FakeStaged:
    """Stage one 'generates' one token per character; stage two turns n tokens into n
    samples whose value names the request. Words in the text trigger failures."""

    generate_seconds: float = 0.0
    decode_seconds: float = 0.0
    oom_above: int | None = None  # a stage-one batch larger than this runs out of memory
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    name: str = "fake-staged"
    model_version: str = "fake 1"
    sample_rate: int = 1000
    max_chunk_chars: int = 1000
    default_voice: str = "v"

    def _log(self, stage: str, requests: Sequence[SynthesisRequest], start: float) -> None:
        with self.lock:
            self.calls.append(Call(stage, [r.text for r in requests], start, time.monotonic()))

    def expected_tokens(self, request: SynthesisRequest) -> int:
        return len(request.text)

    def generate_batch(self, requests: Sequence[SynthesisRequest]) -> list[object]:
        start = time.monotonic()
        time.sleep(self.generate_seconds)
        self._log("generate", requests, start)
        if self.oom_above is not None and len(requests) > self.oom_above:
            raise EngineOutOfMemory(f"batch of {len(requests)}")
        if any("poison" in r.text for r in requests):
            raise ValueError("a poisoned batch")
        return [
            ValueError(f"bad frames for {r.text}") if "bad" in r.text else len(r.text)
            for r in requests
        ]

    def decode_batch(
        self, requests: Sequence[SynthesisRequest], generated: Sequence[object]
    ) -> list[SynthesisResult]:
        start = time.monotonic()
        time.sleep(self.decode_seconds)
        self._log("decode", requests, start)
        if any("undecodable" in r.text for r in requests):
            raise RuntimeError("decoder failed")
        return [
            SynthesisResult(np.full(int(n), _tag(r.text), np.float32), self.sample_rate)  # type: ignore[call-overload]
            for r, n in zip(requests, generated, strict=True)
        ]

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        return self.decode_batch(requests, self.generate_batch(requests))

    def stage(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.stage == name]


def _tag(text: str) -> float:
    return (sum(map(ord, text)) % 997) / 997


def _request(text: str) -> SynthesisRequest:
    return SynthesisRequest(text=text, voice="v")


def _check(result: SynthesisResult, text: str) -> None:
    assert len(result.audio) == len(text)
    assert np.all(result.audio == np.float32(_tag(text)))


@pytest.fixture
def engine() -> FakeStaged:
    fake = FakeStaged()
    assert isinstance(fake, StagedEngine)
    return fake


def test_requests_from_many_threads_merge_into_few_engine_calls(engine: FakeStaged) -> None:
    engine.generate_seconds = 0.02
    batcher = DynamicBatcher(engine, max_batch=16, max_wait_ms=200)
    texts = [f"request number {i:03d}" for i in range(64)]  # all one length bucket
    start = threading.Barrier(64)

    def produce(text: str) -> SynthesisResult:
        start.wait()
        return batcher.submit(_request(text)).result(timeout=10)

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(produce, texts))
    batcher.close()
    for text, result in zip(texts, results, strict=True):
        _check(result, text)
    assert len(engine.stage("generate")) == 4  # 64 requests, batches of 16
    assert batcher.stats.batch_sizes == [16, 16, 16, 16]


def test_the_oldest_request_waits_at_most_max_wait(engine: FakeStaged) -> None:
    batcher = DynamicBatcher(engine, max_batch=8, max_wait_ms=150)
    began = time.monotonic()
    _check(batcher.submit(_request("alone")).result(timeout=5), "alone")
    waited = time.monotonic() - began
    assert 0.15 <= waited < 0.6
    # a full batch does not wait
    began = time.monotonic()
    futures = [batcher.submit(_request(f"full{i}")) for i in range(8)]
    for i, future in enumerate(futures):
        _check(future.result(timeout=5), f"full{i}")
    assert time.monotonic() - began < 0.1
    batcher.close()


def test_token_budget_bounds_the_padded_batch(engine: FakeStaged) -> None:
    batcher = DynamicBatcher(engine, max_batch=64, max_wait_ms=100, token_budget=100)
    texts = [f"{i:02d}" + "x" * 28 for i in range(10)]  # 30 tokens each: 3 fit in 100
    futures = [batcher.submit(_request(text)) for text in texts]
    for text, future in zip(texts, futures, strict=True):
        _check(future.result(timeout=5), text)
    batcher.close()
    sizes = [len(call.texts) for call in engine.stage("generate")]
    assert sizes == [3, 3, 3, 1]
    # one request longer than the budget still runs, alone
    batcher = DynamicBatcher(engine, max_batch=64, max_wait_ms=10, token_budget=100)
    _check(batcher.submit(_request("y" * 150)).result(timeout=5), "y" * 150)
    batcher.close()


def test_short_and_long_requests_are_batched_apart(engine: FakeStaged) -> None:
    assert length_bucket(10) == length_bucket(15) != length_bucket(300)
    batcher = DynamicBatcher(engine, max_batch=8, max_wait_ms=2000)
    texts = [(f"s{i}" + "." * 8) if i % 2 else (f"l{i:02d}" + "." * 300) for i in range(16)]
    futures = [batcher.submit(_request(text)) for text in texts]
    for text, future in zip(texts, futures, strict=True):
        _check(future.result(timeout=5), text)
    batcher.close()
    batches = engine.stage("generate")
    assert len(batches) == 2  # full batches left at once, long before the 2 s wait
    for call in batches:
        assert len({text[0] for text in call.texts}) == 1, call.texts


def test_a_batch_leaving_part_empty_takes_other_lengths_along(engine: FakeStaged) -> None:
    batcher = DynamicBatcher(engine, max_batch=8, max_wait_ms=50)
    texts = ["short1", "short2", "short3", "long" * 50, "longer" * 50]
    futures = [batcher.submit(_request(text)) for text in texts]
    for text, future in zip(texts, futures, strict=True):
        _check(future.result(timeout=5), text)
    batcher.close()
    assert [len(call.texts) for call in engine.stage("generate")] == [5]


def test_decoding_one_batch_overlaps_generating_the_next(engine: FakeStaged) -> None:
    engine.generate_seconds = engine.decode_seconds = 0.2
    batcher = DynamicBatcher(engine, max_batch=4, max_wait_ms=1000)
    began = time.monotonic()
    futures = [batcher.submit(_request(f"chunk {i:02d}")) for i in range(12)]
    for i, future in enumerate(futures):
        _check(future.result(timeout=10), f"chunk {i:02d}")
    wall = time.monotonic() - began
    batcher.close()
    generate, decode = engine.stage("generate"), engine.stage("decode")
    assert len(generate) == len(decode) == 3
    for k in range(2):  # decode of batch k runs while batch k+1 generates
        overlap = min(decode[k].end, generate[k + 1].end) - max(
            decode[k].start, generate[k + 1].start
        )
        assert overlap > 0.15, (decode[k], generate[k + 1])
    assert wall < 1.0  # 3 x (0.2 + 0.2) = 1.2 s one after the other; ~0.8 s overlapped


def test_a_failing_request_fails_alone(engine: FakeStaged) -> None:
    batcher = DynamicBatcher(engine, max_batch=8, max_wait_ms=20)
    texts = ["good one", "bad one", "poison pill", "good two", "undecodable", "good three"]
    futures = [batcher.submit(_request(text)) for text in texts]
    outcomes = {
        text: future.exception(timeout=5) for text, future in zip(texts, futures, strict=True)
    }
    batcher.close()
    assert isinstance(outcomes["bad one"], ValueError) and "bad frames" in str(outcomes["bad one"])
    assert isinstance(outcomes["poison pill"], ValueError)
    assert isinstance(outcomes["undecodable"], RuntimeError)
    for text in ("good one", "good two", "good three"):
        assert outcomes[text] is None
        _check(futures[texts.index(text)].result(), text)


def test_out_of_memory_splits_the_batch(engine: FakeStaged) -> None:
    engine.oom_above = 2
    batcher = DynamicBatcher(engine, max_batch=8, max_wait_ms=20)
    texts = [f"part {i}" for i in range(8)]
    futures = [batcher.submit(_request(text)) for text in texts]
    for text, future in zip(texts, futures, strict=True):
        _check(future.result(timeout=5), text)
    assert batcher.stats.oom_splits == 3  # 8 -> 4 + 4 -> 2 + 2 + 2 + 2
    sizes = [len(call.texts) for call in engine.stage("decode")]
    assert sizes == [8]  # generation split; decoding the whole batch still fit
    engine.oom_above = 0  # even one request does not fit: it fails, retryable
    error = batcher.submit(_request("too big")).exception(timeout=5)
    batcher.close()
    assert isinstance(error, EngineOutOfMemory)


def test_close_finishes_or_fails_what_is_pending(engine: FakeStaged) -> None:
    batcher = DynamicBatcher(engine, max_batch=8, max_wait_ms=5000)
    pending = batcher.submit(_request("still here"))
    batcher.close()
    _check(pending.result(timeout=1), "still here")
    with pytest.raises(BatcherClosed):
        batcher.submit(_request("too late"))
    batcher = DynamicBatcher(engine, max_batch=8, max_wait_ms=5000)
    dropped = batcher.submit(_request("dropped"))
    batcher.close(cancel_pending=True)
    assert isinstance(dropped.exception(timeout=1), BatcherClosed)


def test_batching_engine_serves_concurrent_render_batch_calls(engine: FakeStaged) -> None:
    batching = BatchingEngine(engine, DynamicBatcher(engine, max_batch=32, max_wait_ms=100))
    assert (batching.name, batching.sample_rate) == ("fake-staged", 1000)
    groups = [[f"caller {c} chunk {i}" for i in range(4)] for c in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda texts: batching.render_batch([_request(t) for t in texts]), groups)
        )
    for texts, rendered in zip(groups, results, strict=True):
        for text, result in zip(texts, rendered, strict=True):
            _check(result, text)
    assert len(engine.stage("generate")) == 1  # 8 callers x 4 chunks: one batch of 32
    outcomes = batching.render_outcomes([_request("fine"), _request("bad apple")])
    assert isinstance(outcomes[0], SynthesisResult) and isinstance(outcomes[1], ValueError)
    with pytest.raises(ValueError, match="bad frames"):
        batching.render_batch([_request("bad apple")])
    batching.close()


def test_settings_choose_batching(tmp_path: Path) -> None:
    plain = load_settings(engine="test-tone", data_dir=tmp_path)
    tone = create_engine(plain)
    assert with_batching(tone, plain) is tone  # auto: a one-stage engine is left alone
    forced = load_settings(
        engine="test-tone", data_dir=tmp_path, dynamic_batching="on", batch_size=4
    )
    batching = with_batching(tone, forced)
    assert isinstance(batching, BatchingEngine) and batching.batcher.max_batch == 4
    request = SynthesisRequest(text="Same tones either way.", voice="tone")
    np.testing.assert_array_equal(
        batching.render_batch([request])[0].audio, tone.render_batch([request])[0].audio
    )
    batching.close()
    staged = FakeStaged()
    auto = with_batching(staged, plain)
    assert isinstance(auto, BatchingEngine)
    auto.close()
