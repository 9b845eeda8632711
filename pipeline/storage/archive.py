"""Archived outputs: which finished files sit in a cold storage class, and restores.

Objects in GLACIER or DEEP_ARCHIVE cannot be read until a restore request makes a
temporary copy (hours); GLACIER_IR and the standard classes read at once. Downloads ask
here first, so a client is told "restore needed" or "restore in progress" instead of
being handed a link that fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import InputError
from pipeline.storage.base import ObjectStore
from pipeline.storage.s3 import S3ObjectStore

COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
State = Literal["ready", "archived", "restoring"]


@dataclass(frozen=True)
class ArchiveState:
    storage_class: str
    state: State
    restored_until: str | None = None  # expiry of a finished restore's copy


READY = ArchiveState("STANDARD", "ready")


def parse_restore(storage_class: str, restore: str | None) -> ArchiveState:
    """The state an object's StorageClass and x-amz-restore header describe."""
    if storage_class not in COLD_CLASSES:
        return ArchiveState(storage_class, "ready")
    if not restore:
        return ArchiveState(storage_class, "archived")
    if re.search(r'ongoing-request\s*=\s*"true"', restore):
        return ArchiveState(storage_class, "restoring")
    expiry = re.search(r'expiry-date\s*=\s*"([^"]+)"', restore)
    return ArchiveState(storage_class, "ready", expiry.group(1) if expiry else None)


def _s3(store: ObjectStore) -> S3ObjectStore | None:
    inner = getattr(store, "inner", store)  # a WriteOnceStore wraps the real one
    return inner if isinstance(inner, S3ObjectStore) else None


def archive_state(store: ObjectStore, key: str) -> ArchiveState:
    """Whether `key` can be downloaded now. Files in a local folder always can."""
    s3 = _s3(store)
    if s3 is None:
        return READY
    head = s3.head(key)
    return parse_restore(str(head.get("StorageClass") or "STANDARD"), head.get("Restore"))


def request_restore(store: ObjectStore, key: str, *, days: int, tier: str) -> ArchiveState:
    """Ask for a temporary readable copy of an archived object; a restore already under
    way, or an object that needs none, is left as it is."""
    state = archive_state(store, key)
    s3 = _s3(store)
    if state.state != "archived" or s3 is None:
        return state
    refused = s3.restore(key, days=days, tier=tier)
    if refused == "GlacierExpeditedRetrievalNotAvailable":
        raise InputError("expedited restores are not available now; use the Standard tier")
    after = archive_state(store, key)
    # S3 answers 202 and starts the restore; some servers finish it at once.
    return after if after.state != "archived" else ArchiveState(state.storage_class, "restoring")


def outputs_message(job_id: str, states: list[ArchiveState]) -> str | None:
    """What a client should do when some files cannot be downloaded yet."""
    archived = sum(1 for s in states if s.state == "archived")
    restoring = sum(1 for s in states if s.state == "restoring")
    if archived:
        cls = next(s.storage_class for s in states if s.state == "archived")
        return (
            f"{archived} of {len(states)} files of job {job_id} are archived in {cls}; "
            f"request a restore (voicebatch restore {job_id}, or POST /v1/jobs/{job_id}/restore)"
            " and download once it is done (hours)"
        )
    if restoring:
        return (
            f"a restore of {restoring} of {len(states)} files of job {job_id} is in progress; "
            "download again once it is done"
        )
    return None
