"""Object keys: content-addressed chunk keys and the check every key passes.

Chunk audio lives at content-addressed keys (`chunk_key`): the same text, voice, engine,
model version and parameters always map to the same key, and a key is written once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from pipeline.errors import InputError


def content_hash(
    *, text: str, voice: str, engine: str, model_version: str, params: Mapping[str, Any]
) -> str:
    """sha256 over everything that determines a chunk's audio."""
    payload = json.dumps(
        {
            "text": text,
            "voice": voice,
            "engine": engine,
            "model": model_version,
            "params": dict(params),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# The two top-level folders of a store: chunk audio (a cache: lifecycle rules may expire
# it) and each job's finished files (jobs/<id>/, which rules may move to cold storage).
CHUNKS_FOLDER = "chunks"
JOBS_FOLDER = "jobs"


def chunk_key(digest: str, *, suffix: str = "wav") -> str:
    """The object key of a chunk's audio, fanned out by the hash's first byte."""
    return f"{CHUNKS_FOLDER}/{digest[:2]}/{digest}.{suffix}"


def job_folder(job_id: uuid.UUID) -> str:
    """The folder of a job's finished files, under a store's root (distributed mode)."""
    return f"{JOBS_FOLDER}/{job_id}"


def check_key(key: str) -> str:
    """Refuse keys that could escape a folder or mean different things on different stores."""
    path = PurePosixPath(key)
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(p in ("", ".", "..") for p in key.split("/"))
    ):
        raise InputError(f"invalid object key {key!r}")
    return str(path)
