"""What an engine's failure says about the engine: out of memory, or broken for good.

Engines raise their libraries' own errors (torch's RuntimeError, onnxruntime's), so this
reads them by type name and message, walking the `raise ... from` chain. Two kinds matter
to the callers:

- out of memory: a smaller batch may fit, so the batch is halved (the LLM's and the SNAC
  decoder's alike);
- a sticky device error: once CUDA reports one of these the context is unusable and every
  later call fails the same way, whatever the chunk; only a new process helps. The
  messages are torch's and the CUDA runtime's own (c10's `CUDA error: ...`, the runtime's
  `cudaError...` names, cuBLAS/cuDNN execution failures, onnxruntime's `CUDA failure N:`).
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.errors import EngineBroken, EngineOutOfMemory

# Out of memory, as torch (torch.OutOfMemoryError, "CUDA out of memory. Tried to
# allocate ..."), cuBLAS/cuDNN and onnxruntime's arena report it.
_OOM_TYPES = ("OutOfMemoryError",)
_OOM_MESSAGES = (
    "out of memory",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "failed to allocate memory",
    "bfcarena",
    "cudaerrormemoryallocation",
)

# Errors after which the device (the process's CUDA context) stays unusable.
_STICKY_MESSAGES = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
    "uncorrectable ecc error",
    "cudaerrorillegaladdress",
    "cudaerrorassert",
    "cudaerrorlaunchfailure",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
    "cublas_status_internal_error",
    "cuda driver",
    "cuda error: unknown error",
    "cuda failure",  # onnxruntime's CUDA execution provider: "CUDA failure 700: ..."
    "cuda error",  # c10's "CUDA error: <anything>", when it is not out of memory
    "nccl error",
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        # only what it was raised from: __context__ is whatever was being handled, which
        # in isolate's splitting is another batch's out of memory
        current = current.__cause__


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the device ran out of memory."""
    for link in _chain(exc):
        if isinstance(link, EngineOutOfMemory) or type(link).__name__ in _OOM_TYPES:
            return True
        message = str(link).lower()
        if any(marker in message for marker in _OOM_MESSAGES):
            return True
    return False


def is_sticky_device_error(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is an error that leaves the device
    unusable for this process (out of memory is not one: it passes)."""
    if is_out_of_memory(exc):
        return False
    for link in _chain(exc):
        if isinstance(link, EngineBroken):
            return True
        message = str(link).lower()
        if any(marker in message for marker in _STICKY_MESSAGES):
            return True
    return False


def as_engine_error(exc: BaseException) -> BaseException:
    """`exc` in our terms where it names one of the kinds above: EngineOutOfMemory or
    EngineBroken (raised from it); any other error as it is."""
    if isinstance(exc, EngineOutOfMemory | EngineBroken):
        return exc
    if is_out_of_memory(exc):
        error: BaseException = EngineOutOfMemory(_describe("out of memory", exc))
    elif is_sticky_device_error(exc):
        error = EngineBroken(_describe("the engine's device failed", exc))
    else:
        return exc
    error.__cause__ = exc
    return error


def _describe(what: str, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{what}: {type(exc).__name__}: {first}"
