"""A local folder as an ObjectStore: atomic writes by temp file and link or rename."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import NotFoundError
from pipeline.storage.keys import check_key


class LocalObjectStore:
    """Objects as files under a root folder; writes are atomic (temp file + link/rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write_temp(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        # open(..., "xb") rather than mkstemp: files get the user's umask (0644), not 0600.
        tmp = str(path.parent / f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "xb") as handle:
            handle.write(data)
        return tmp

    def put_if_absent(self, key: str, data: bytes, *, content_type: str) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)  # fails if another writer got there first: write-once
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
        os.replace(self._write_temp(path, data), path)

    def put_file(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as handle:
                shutil.copyfileobj(source, handle, 1 << 20)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file_if_absent(self, key: str, source: BinaryIO, *, content_type: str) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as handle:
                shutil.copyfileobj(source, handle, 1 << 20)
            os.link(tmp, path)  # fails if another writer got there first: write-once
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {key} in {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def child(self, prefix: str) -> LocalObjectStore:
        return LocalObjectStore(self._path(prefix))

    def url(self, key: str) -> str:
        return self._path(key).as_uri()
