"""What an engine's failure says (out of memory, a sticky device error, the chunk's own
trouble), the batcher acting on it, and a batcher whose thread dies."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.batching import BatcherDead, DynamicBatcher, isolate
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.failures import as_engine_error, is_out_of_memory, is_sticky_device_error
from pipeline.engines.maya1.snac.base import BatchedSnacDecoder
from pipeline.engines.testing import STICKY_CUDA_ERROR
from pipeline.errors import (
    EngineBroken,
    EngineOutOfMemory,
    InputError,
    PermanentError,
    RetryableError,
)
from pipeline.render.failures import EngineHealth, Failure, classify

# Messages as torch, the CUDA runtime and onnxruntime write them.
STICKY = [
    STICKY_CUDA_ERROR,
    "CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` to enable "
    "device-side assertions.",
    "CUDA error: unspecified launch failure",
    "CUDA error: misaligned address",
    "CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k)`",
    "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered",
    "RuntimeError: CUDA error at cuda_stream_view.cpp:45: cudaErrorIllegalAddress",
]
OOM = [
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)",
    "CUDA error: out of memory",
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested "
    "buffer of size 1073741824",
    "CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
]


class OutOfMemoryError(RuntimeError):
    """Named as torch's torch.OutOfMemoryError (torch.cuda.OutOfMemoryError)."""


@pytest.mark.parametrize("message", STICKY)
def test_sticky_device_errors_are_recognised(message: str) -> None:
    exc = RuntimeError(message)
    assert is_sticky_device_error(exc) and not is_out_of_memory(exc)
    assert isinstance(as_engine_error(exc), EngineBroken)
    assert classify(exc) == Failure.BROKEN


@pytest.mark.parametrize("message", OOM)
def test_out_of_memory_is_recognised_and_is_not_sticky(message: str) -> None:
    exc = RuntimeError(message)
    assert is_out_of_memory(exc) and not is_sticky_device_error(exc)
    assert isinstance(as_engine_error(exc), EngineOutOfMemory)
    assert is_out_of_memory(OutOfMemoryError("whatever it says"))


def test_other_failures_keep_their_kind() -> None:
    assert classify(ValueError("the tokenizer choked on this text")) == Failure.CHUNK
    assert classify(InputError("unknown voice")) == Failure.FINAL
    assert classify(PermanentError("no audible speech")) == Failure.FINAL
    assert classify(RetryableError("S3 request failed: SlowDown")) == Failure.TRANSIENT
    assert classify(EngineOutOfMemory("one request too long")) == Failure.CHUNK
    # what it was raised from counts; what was being handled when it was raised does not
    wrapped = RuntimeError("decoder failed")
    wrapped.__cause__ = RuntimeError(STICKY_CUDA_ERROR)
    assert classify(wrapped) == Failure.BROKEN
    try:
        try:
            raise RuntimeError(OOM[0])
        except RuntimeError:
            raise ValueError("a different, chunk-specific error") from None
    except ValueError as exc:
        exc.__context__ = RuntimeError(OOM[0])
        assert classify(exc) == Failure.CHUNK and not is_out_of_memory(exc)


def test_the_same_error_on_different_chunks_in_a_row_is_a_broken_engine() -> None:
    health = EngineHealth(broken_after=3)
    assert health.failed("a", ValueError("bad tensor at 0x7f01")) == Failure.CHUNK
    assert health.failed("a", ValueError("bad tensor at 0x7f02")) == Failure.CHUNK  # same chunk
    assert health.failed("b", ValueError("bad tensor at 0x7f03")) == Failure.CHUNK
    assert health.failed("c", ValueError("bad tensor at 0x7f04")) == Failure.BROKEN
    assert health.broken is not None and "3 different chunks" in str(health.broken)


def test_a_success_or_another_error_breaks_the_streak_and_our_errors_never_count() -> None:
    health = EngineHealth(broken_after=3)
    health.failed("a", ValueError("x"))
    health.failed("b", ValueError("x"))
    health.succeeded()
    assert health.failed("c", ValueError("x")) == Failure.CHUNK
    assert health.failed("d", KeyError("y")) == Failure.CHUNK
    for chunk in "efghij":  # one voice refused on every chunk of a job is the job's fault
        assert health.failed(chunk, InputError("unknown voice 'x'")) == Failure.FINAL
        assert health.failed(chunk, EngineOutOfMemory("too long")) == Failure.CHUNK
    assert health.broken is None
    assert health.failed("k", RuntimeError(STICKY_CUDA_ERROR)) == Failure.BROKEN


def test_isolate_does_not_retry_one_by_one_on_a_broken_device() -> None:
    calls: list[int] = []

    def run(items: list[str]) -> list[str]:
        calls.append(len(items))
        raise RuntimeError(STICKY_CUDA_ERROR)

    outcomes, splits = isolate(run, ["a", "b", "c", "d"])
    assert calls == [4] and splits == 0
    assert all(isinstance(outcome, EngineBroken) for outcome in outcomes)


def test_a_library_out_of_memory_error_halves_the_batch() -> None:
    def run(items: list[str]) -> list[str]:
        if len(items) > 1:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 512.00 MiB")
        return [item.upper() for item in items]

    outcomes, splits = isolate(run, ["a", "b", "c", "d"])
    assert outcomes == ["A", "B", "C", "D"] and splits == 3


class SmallGpuSnac(BatchedSnacDecoder):
    """A SNAC runtime whose device fits one request at a time, failing as torch does."""

    noise = False
    noise_factors = (1, 2, 4)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def run_batch(
        self, padded: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], noise: object
    ) -> npt.NDArray[np.floating]:
        self.calls.append(len(padded))
        if len(padded) > 1:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return np.zeros((len(padded), padded.shape[1] * 2048), np.float32)


class StagedOnSnac:
    """A two-stage engine whose second stage is a SNAC decoder (as Maya1's is)."""

    name = "staged-snac"
    model_version = "1"
    sample_rate = 24000
    max_chunk_chars = 100
    default_voice = "v"

    def __init__(self) -> None:
        self.decoder = SmallGpuSnac()

    def expected_tokens(self, request: SynthesisRequest) -> int:
        return 10

    def generate_batch(self, requests: Sequence[SynthesisRequest]) -> list[object]:
        return [np.full((2, 7), 5, np.int64) for _ in requests]

    def decode_batch(
        self, requests: Sequence[SynthesisRequest], generated: Sequence[object]
    ) -> list[SynthesisResult]:
        audio = self.decoder.decode(list(generated), [0] * len(generated))  # type: ignore[arg-type]
        return [SynthesisResult(samples, 24000) for samples in audio]

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        return self.decode_batch(requests, self.generate_batch(requests))


def test_out_of_memory_in_the_snac_decoder_takes_the_halving_path() -> None:
    decoder = SmallGpuSnac()
    with pytest.raises(EngineOutOfMemory):
        decoder.decode([np.full((2, 7), 5, np.int64)] * 2, [0, 0])
    engine = StagedOnSnac()
    batcher = DynamicBatcher(engine, max_batch=4, max_wait_ms=200)
    try:
        futures = [batcher.submit(SynthesisRequest(f"r{n}", "v", {})) for n in range(4)]
        results = [future.result(timeout=30) for future in futures]
    finally:
        batcher.close()
    assert all(len(result.audio) == 2 * 2048 for result in results)
    assert batcher.stats.oom_splits >= 1  # halved, not retried one by one as an unknown error


class Fatal(BaseException):
    """Not an Exception: what kills a thread (as SystemExit or a C extension's abort would)."""


class DiesOnSecondBatch:
    name = "dies"
    model_version = "1"
    sample_rate = 1000
    max_chunk_chars = 100
    default_voice = "v"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        self.entered.set()
        assert self.release.wait(30)
        raise Fatal("the engine's thread is gone")


def test_a_dead_batcher_fails_waiting_and_later_requests_at_once() -> None:
    engine = DiesOnSecondBatch()
    batcher = DynamicBatcher(engine, max_batch=1, max_wait_ms=1)
    first = batcher.submit(SynthesisRequest("one", "v", {}))
    assert engine.entered.wait(30)
    waiting = batcher.submit(SynthesisRequest("two", "v", {}))  # queued behind the first
    engine.release.set()
    with pytest.raises(Fatal):
        first.result(timeout=30)
    # settled at once, not left waiting for a thread that is gone
    assert isinstance(waiting.exception(timeout=10), BatcherDead)
    with pytest.raises(BatcherDead, match="thread died"):
        batcher.submit(SynthesisRequest("three", "v", {}))
