"""The store a storage URL names: s3://bucket/prefix, file:///path or a plain path."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.storage.base import ObjectStore
from pipeline.storage.local import LocalObjectStore
from pipeline.storage.s3 import S3ObjectStore


def store_at(uri: str, *, root: ObjectStore, root_url: str, settings: Settings) -> ObjectStore:
    """The store a job's output URI names: a view of `root` when the URI lies under
    `root_url` (so every job shares one S3 client), else a store of its own."""
    base = root_url.rstrip("/") + "/"
    if uri.startswith(base):
        return root.child(uri[len(base) :])
    return open_store(uri, settings)


def open_store(url: str, settings: Settings) -> ObjectStore:
    """The store a storage URL names: s3://bucket/prefix, file:///path or a plain path."""
    if url.startswith("s3://"):
        return S3ObjectStore.from_settings(url, settings)
    if url.startswith("file://"):
        url = unquote(urlsplit(url).path)  # as Path.as_uri() wrote it
    if "://" in url:
        raise InputError(
            f"unsupported storage URL {url!r} (use a folder path or s3://bucket/prefix)"
        )
    return LocalObjectStore(Path(url))
