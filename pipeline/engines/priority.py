"""CPU priority of batch rendering on a worker that also answers speech requests.

A CPU engine that renders one request at a time (Piper) cannot be interrupted mid-call,
so a speech sentence queued behind a batch chunk waits for the whole chunk. Instead the
worker gives speech its own session of the engine (`RealtimeTwin.twin`) at normal
priority and lowers batch rendering's threads to a higher nice value: the kernel then
runs a speech sentence almost as if the batch work were not there, and gives the batch
work every cycle speech leaves idle. Nice values are per thread on Linux and inherited by
the threads a thread starts, so an engine loaded on a lowered thread has its
onnxruntime pool lowered too, and each rendering thread lowers itself before its call.
Raising a nice value needs no privilege; lowering one again would, so a lowered thread
stays lowered (only batch work runs on it)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def thread_niceness() -> int:
    """The calling thread's nice value (0 where the platform has none)."""
    if not hasattr(os, "getpriority"):
        return 0
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def lower_this_thread(niceness: int) -> None:
    """Raise the calling thread's nice value to `niceness` unless it is that high already."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    if thread_niceness() < niceness:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError as exc:  # a sandbox that forbids it: render at normal priority
            log.warning("cannot lower the rendering thread to nice %d: %s", niceness, exc)


def made_lowered(niceness: int, make: Callable[[], T]) -> T:
    """`make()` run on a thread lowered to `niceness`, so that every thread it starts
    (an onnxruntime session's pool) runs lowered too; its result or its exception."""
    if niceness <= 0:
        return make()
    made: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            lower_this_thread(niceness)
            made.append(make())
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    loader = threading.Thread(target=run, name="engine-load-lowered")
    loader.start()
    loader.join()
    if failed:
        raise failed[0]
    return made[0]
