"""CPU priority of batch rendering on a worker that also answers speech requests.

A CPU engine that renders one request at a time (Piper) cannot be interrupted mid-call,
so a speech sentence queued behind a batch chunk would wait for the whole chunk. Instead
the worker keeps the engine in its own process for speech, at normal priority, and
renders batch work in child processes lowered to a higher nice value
(engines.piper_processes): the kernel then runs a speech sentence almost as if the batch
work were not there, and gives the batch work every cycle speech leaves idle. Raising a
nice value needs no privilege; lowering it again would, so a lowered process stays
lowered (it only ever renders batch work). The nice value is also the guard against
starvation: under a flood of speech a process at nice 15 still gets a few per cent of a
core.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def thread_niceness(tid: int | None = None) -> int:
    """A thread's nice value (the caller's by default; 0 where the platform has none)."""
    if not hasattr(os, "getpriority"):
        return 0
    return os.getpriority(os.PRIO_PROCESS, tid or threading.get_native_id())


def lower_process(niceness: int) -> None:
    """Raise the nice value of every thread of this process to `niceness` (Linux keeps a
    nice value per thread, and a new thread takes its creator's)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        try:
            if tid == 0 or thread_niceness(tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:  # a sandbox that forbids it: render at normal priority
            log.warning("cannot lower batch rendering to nice %d: %s", niceness, exc)
            return
