"""Object keys: content-addressed chunk keys and the check every key passes.

Chunk audio lives at content-addressed keys (`chunk_key`): the same text, voice, engine,
model version and parameters always map to the same key, and a key is written once.
"""

from __future__ import annotations

import hashlib
import json
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


def chunk_key(digest: str, *, suffix: str = "wav") -> str:
    """The object key of a chunk's audio, fanned out by the hash's first byte."""
    return f"chunks/{digest[:2]}/{digest}.{suffix}"


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
