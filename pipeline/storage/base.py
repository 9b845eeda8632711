"""The ObjectStore protocol: what every store (a local folder, any S3 API) offers."""

from __future__ import annotations

from typing import BinaryIO, Protocol, runtime_checkable


@runtime_checkable
class ObjectStore(Protocol):
    """Where chunk audio and finished files go."""

    def put_if_absent(self, key: str, data: bytes, *, content_type: str) -> bool:
        """Write `key` unless it exists. True if this call wrote it; an existing key is success."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Write or replace `key`."""
        ...

    def put_file(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        """Write or replace `key` from a file read from its current position (large outputs)."""
        ...

    def put_file_if_absent(self, key: str, source: BinaryIO, *, content_type: str) -> bool:
        """Write `key` from a file unless it exists (atomically: no partial object is ever
        seen). True if this call wrote it; an existing key is success."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; NotFoundError if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    def child(self, prefix: str) -> ObjectStore:
        """The same store seen under `prefix` (a job's folder), sharing connections."""
        ...

    def url(self, key: str) -> str:
        """A URL a client can fetch the object from (presigned for S3)."""
        ...
