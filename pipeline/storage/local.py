"""A local folder as an ObjectStore: atomic writes by temp file and link or rename."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import NotFoundError
from pipeline.storage.keys import check_key

# A temporary file whose writer's process is gone (a kill mid-write) is stale after this
# many seconds; any temporary file is stale after a day (a writer on another host).
STALE_TEMP_SECONDS = 60
STALE_TEMP_ANY_SECONDS = 24 * 3600


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (lease owners and the writers of
    temporary files are named by it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class LocalObjectStore:
    """Objects as files under a root folder. A write goes to a temporary file in the
    same folder, is fsynced, and only then published by link (write-once) or rename, so
    a crash leaves either the whole file or none. Temporary files a killed writer left
    behind are removed the first time this store writes into their folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self._swept: set[Path] = set()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _sweep(self, folder: Path) -> None:
        if folder in self._swept:
            return
        self._swept.add(folder)
        now = time.time()
        for stale in folder.glob(".tmp-*"):
            try:
                age = now - stale.stat().st_mtime
                pid = int(stale.name.split("-")[1])
            except (OSError, ValueError, IndexError):
                continue
            if age > STALE_TEMP_ANY_SECONDS or (age > STALE_TEMP_SECONDS and not pid_alive(pid)):
                stale.unlink(missing_ok=True)

    def _temp(self, path: Path, write: Callable[[BinaryIO], object]) -> Path:
        """A fsynced temporary file beside `path` holding what `write` wrote."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sweep(path.parent)
        # open(..., "xb") rather than mkstemp: files get the user's umask (0644), not 0600.
        tmp = path.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _publish_once(self, tmp: Path, path: Path) -> bool:
        try:
            os.link(tmp, path)  # fails if another writer got there first: write-once
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _publish(self, tmp: Path, path: Path) -> None:
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def put_if_absent(self, key: str, data: bytes, *, content_type: str) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        return self._publish_once(self._temp(path, lambda handle: handle.write(data)), path)

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
        self._publish(self._temp(path, lambda handle: handle.write(data)), path)

    def put_file(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        path = self._path(key)
        self._publish(self._temp(path, lambda h: shutil.copyfileobj(source, h, 1 << 20)), path)

    def put_file_if_absent(self, key: str, source: BinaryIO, *, content_type: str) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        tmp = self._temp(path, lambda h: shutil.copyfileobj(source, h, 1 << 20))
        return self._publish_once(tmp, path)

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
