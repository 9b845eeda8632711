"""The assembly leases a stopping worker process hands back at its cut-off (workers.stop).

A worker told to stop waits for its running tasks until its grace is nearly over, then
releases what they hold and exits. Render tasks register their lease owners for that;
an assembly or finalization holds its lease under a worker_id made in the process that
runs it (pipeline.render.leases: `host:pid:nonce`), so the assembly leases this process
holds are found by that prefix. Left to run out, they would keep the next assembler out
for the whole lease: the message the cut-off requeues finds the lease live and is dropped
as a duplicate, and only the reconciler publishes the work again, once the lease expired.

Handing a lease back must not let two assemblers record the same work:

- only an item or job still `assembling` under this process's lease is released: an
  assembly that recorded its result holds no lease any more (complete_item, fail_item
  and finish_job leave `assembling` in the UPDATE that records it), so nothing finished
  is handed on, and an assembly that has not recorded it never will: the cut-off exits
  the process (os._exit) right after this release;
- should the holder's thread reach its record in the moment before that exit, the
  record is fenced by the owner (pipeline.state.items: only while it holds the lease)
  and changes nothing once the lease is released;
- the attempt is given back, as for chunks (release_leases): the worker stopped, the
  item did nothing wrong; `updated_at` is now, so the reconciler does not publish it
  again before its grace (the cut-off requeues the message itself).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import case
from sqlalchemy.orm import Session

from pipeline.state.clock import clock
from pipeline.state.models import Item, ItemStatus, Job, JobStatus
from pipeline.state.updates import conditional_update


def process_owner_prefix(pid: int | None = None) -> str:
    """The start of every lease owner (worker_id) made in process `pid` (this one) of
    this host."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}:"


def release_process_assemblies(session: Session, *, owner_prefix: str | None = None) -> int:
    """Hand back every item assembly and job finalization still `assembling` under a
    lease of this process (`owner_prefix`: process_owner_prefix()); how many."""
    prefix = process_owner_prefix() if owner_prefix is None else owner_prefix
    at = clock(session, None)
    released = 0
    scopes: tuple[tuple[Any, Any], ...] = (
        (Item, ItemStatus.ASSEMBLING),
        (Job, JobStatus.ASSEMBLING),
    )
    for table, assembling in scopes:
        attempts = table.assembly_attempts
        released += conditional_update(
            session,
            table,
            (
                table.status == assembling,
                table.assembly_owner.startswith(prefix, autoescape=True),
            ),
            assembly_owner=None,
            assembly_expires_at=None,
            assembly_attempts=case((attempts > 0, attempts - 1), else_=0),
            updated_at=at,
        )
    return released
