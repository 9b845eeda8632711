"""A job's output folder where every file is written once.

In distributed mode several copies of an assembly step may run (a redelivered message, a
reconciler that published again, a worker thought dead): each builds the same bytes from
the database's record, and the first to finish writes the file. Later copies find the key
taken and leave it be, so a finished file is never replaced under a reader, and a
versioned bucket holds exactly one version of each output.
"""

from __future__ import annotations

from typing import BinaryIO

from pipeline.storage.base import ObjectStore


class WriteOnceStore:
    """An ObjectStore whose writes never replace an existing key (an existing key is
    success); reads, links and deletes go to the store it wraps."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.kept: list[str] = []  # keys a write found already written (by another copy)

    def put_if_absent(self, key: str, data: bytes, *, content_type: str) -> bool:
        return self._note(key, self.inner.put_if_absent(key, data, content_type=content_type))

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.put_if_absent(key, data, content_type=content_type)

    def put_file(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        self.put_file_if_absent(key, source, content_type=content_type)

    def put_file_if_absent(self, key: str, source: BinaryIO, *, content_type: str) -> bool:
        written = self.inner.put_file_if_absent(key, source, content_type=content_type)
        return self._note(key, written)

    def _note(self, key: str, written: bool) -> bool:
        if not written:
            self.kept.append(key)
        return written

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def child(self, prefix: str) -> WriteOnceStore:
        return WriteOnceStore(self.inner.child(prefix))

    def url(self, key: str) -> str:
        return self.inner.url(key)
