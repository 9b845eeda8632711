"""Cover art: a JPEG or PNG image, checked by decoding it, for the files' picture tags.

A cover reaches assembly as an object in the job's output folder (`cover.jpg` or
`cover.png`), written when the job is planned or submitted: in distributed mode the
assemble workers run on other machines than the submit API, and the output store is the
one place both reach. The job's options record its key, type and hash.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from pipeline.errors import InputError, PermanentError

log = logging.getLogger(__name__)
MAX_COVER_BYTES = 20 << 20  # a 3000 x 3000 JPEG is 2-5 MB; 20 MB is far past any real cover
MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


@dataclass(frozen=True)
class Cover:
    """A checked cover image."""

    data: bytes
    mime_type: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        """The file extension of the image's type: jpg or png."""
        return EXTENSIONS[self.mime_type]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def codec(self) -> str:
        """The FFmpeg codec name of the picture stream."""
        return "mjpeg" if self.mime_type == "image/jpeg" else "png"

    def option(self, key: str) -> dict[str, Any]:
        """How a job records its cover (options["cover"]), stored at `key`."""
        return {
            "key": key,
            "mime_type": self.mime_type,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
        }


def _kind(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def cover_from_bytes(data: bytes, *, name: str = "cover") -> Cover:
    """Check that `data` is a JPEG or PNG image that decodes, and measure it."""
    if not data:
        raise InputError(f"{name}: is empty")
    if len(data) > MAX_COVER_BYTES:
        raise InputError(
            f"{name}: {len(data) / 1e6:.1f} MB is over the {MAX_COVER_BYTES >> 20} MB cover limit"
        )
    kind = _kind(data)
    if kind is None:
        raise InputError(f"{name}: is not a JPEG or PNG image")
    try:
        with av.open(io.BytesIO(data), "r", format=f"{kind}_pipe") as container:
            frame = next(container.decode(video=0))
            width, height = int(frame.width), int(frame.height)
    except (av.FFmpegError, StopIteration) as exc:
        raise InputError(f"{name}: the {kind.upper()} image cannot be decoded ({exc})") from exc
    if width < 1 or height < 1:
        raise InputError(f"{name}: the image has no pixels")
    return Cover(data, MIME_TYPES[kind], width, height)


def load_cover(path: Path) -> Cover:
    """A cover image file (`--cover FILE`), checked."""
    path = path.expanduser()
    if not path.is_file():
        raise InputError(f"cover {path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cover {path}: cannot be read ({exc.strerror})") from exc
    return cover_from_bytes(data, name=f"cover {path}")


def cover_from_option(option: dict[str, Any] | None, data: bytes) -> Cover | None:
    """The cover a job recorded, from the bytes read back at its key (checked against
    the recorded hash, so a file replaced in the folder is noticed)."""
    if not option:
        return None
    if hashlib.sha256(data).hexdigest() != option["sha256"]:
        raise PermanentError(
            f"{option['key']} in the output folder is not the job's cover any more"
        )
    return Cover(data, option["mime_type"], int(option["width"]), int(option["height"]))


def document_cover(document: Any) -> Cover | None:
    """The cover a reader found in the book itself (the EPUB reader's), checked like a
    --cover file. A Document may carry `cover`: an object with the image bytes as `data`
    (and its MIME type, which the check finds out anyway), or the bytes themselves."""
    found = getattr(document, "cover", None)
    if found is None:
        return None
    data = getattr(found, "data", found)
    try:
        return cover_from_bytes(bytes(data), name="the book's cover")
    except InputError as exc:
        # Not asked for: a cover the files cannot carry (a GIF, a broken image) is left
        # out with a warning rather than failing the book. --cover gives another.
        log.warning("%s; the files get no cover (give one with --cover)", exc.message)
        return None
