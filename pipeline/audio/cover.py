"""Cover art: a JPEG or PNG image, checked by decoding it, for the files' picture tags.

An image is measured from its header before anything decodes it: a PNG's IHDR, a
JPEG's frame headers (SOF). One that declares more than `MAX_COVER_PIXELS` (3000 x 3000)
is refused unread, so a 2 MB PNG of 16000 x 16000 pixels (a decompression bomb, 1 GB
once decoded) costs nothing; one within the limit decodes in bounded memory (at most
about 36 MB of pixels).

A cover reaches assembly as an object in the job's output folder (`cover.jpg` or
`cover.png`), written when the job is planned or submitted: in distributed mode the
assemble workers run on other machines than the submit API, and the output store is the
one place both reach. The job's options record its key, type and hash.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from pipeline.errors import InputError, PermanentError

log = logging.getLogger(__name__)
MAX_COVER_BYTES = 20 << 20  # a 3000 x 3000 JPEG is 2-5 MB; 20 MB is far past any real cover
# Store covers are 1400-3000 pixels a side; a portrait 2000 x 4500 fits as well.
MAX_COVER_PIXELS = 3000 * 3000
MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): each
# declares the frame's height and width.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}  # TEM, SOI, RST0-7: no length follows
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


def _png_sizes(data: bytes) -> list[tuple[int, int]]:
    """The size each PNG in `data` declares in its IHDR (the first chunk, always)."""
    sizes = []
    start = data.find(PNG_SIGNATURE)
    while start != -1:
        header = data[start + 8 : start + 24]
        if len(header) < 16 or header[4:8] != b"IHDR":
            raise ValueError("a PNG without its IHDR header")
        sizes.append(struct.unpack(">II", header[8:16]))
        start = data.find(PNG_SIGNATURE, start + 8)
    return sizes


def _jpeg_sizes(data: bytes) -> list[tuple[int, int]]:
    """The (width, height) of every frame header (SOF) in a JPEG stream, walking its
    segments by their lengths; entropy-coded data after a scan header is skipped to the
    next marker (inside it, 0xFF is always followed by 0x00 or a restart marker)."""
    sizes = []
    index, end = 2, len(data)
    while index + 1 < end:
        if data[index] != 0xFF:
            index = data.find(b"\xff", index)
            if index == -1:
                break
            continue
        marker = data[index + 1]
        if marker == 0xFF:  # a fill byte
            index += 1
            continue
        if marker in _STANDALONE or marker == 0x00:
            index += 2
            continue
        if marker == 0xD9:  # end of image: another may follow in the same stream
            index = data.find(b"\xff\xd8", index + 2)
            if index == -1:
                break
            index += 2
            continue
        if index + 4 > end:
            break
        length = int.from_bytes(data[index + 2 : index + 4], "big")
        if marker in _SOF:
            if index + 9 > end:
                raise ValueError("a JPEG frame header cut short")
            height = int.from_bytes(data[index + 5 : index + 7], "big")
            width = int.from_bytes(data[index + 7 : index + 9], "big")
            sizes.append((width, height))
        index += 2 + length
    return sizes


def declared_size(data: bytes, kind: str) -> tuple[int, int]:
    """The largest (width, height) the image's headers declare, read without decoding
    any pixels; ValueError when no header declares one."""
    sizes = _png_sizes(data) if kind == "png" else _jpeg_sizes(data)
    if not sizes:
        raise ValueError(f"no {kind.upper()} header gives the image's size")
    return max(sizes, key=lambda size: size[0] * size[1])


def cover_from_bytes(data: bytes, *, name: str = "cover") -> Cover:
    """Check that `data` is a JPEG or PNG image within `MAX_COVER_PIXELS` that decodes,
    and measure it. The size is read from the header first: an image over the limit is
    refused without decoding it."""
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
        declared = declared_size(data, kind)
    except ValueError as exc:
        raise InputError(f"{name}: the {kind.upper()} image cannot be decoded ({exc})") from exc
    _check_pixels(declared, name)
    try:
        # The decoder's own limit as well, in case a header the check above read is not
        # the one the decoder goes by (its check pads the width to the row alignment).
        limit = {"max_pixels": str((declared[0] + 64) * declared[1])}
        with av.open(io.BytesIO(data), "r", format=f"{kind}_pipe", options=limit) as container:
            container.streams.video[0].codec_context.options = dict(limit)
            frame = next(container.decode(video=0))
            width, height = int(frame.width), int(frame.height)
    except (av.FFmpegError, StopIteration, IndexError) as exc:
        raise InputError(f"{name}: the {kind.upper()} image cannot be decoded ({exc})") from exc
    if width < 1 or height < 1:
        raise InputError(f"{name}: the image has no pixels")
    _check_pixels((width, height), name)
    return Cover(data, MIME_TYPES[kind], width, height)


def _check_pixels(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_COVER_PIXELS:
        raise InputError(
            f"{name}: {width} x {height} pixels is over the cover limit of "
            f"{MAX_COVER_PIXELS:,} pixels (3000 x 3000); give a smaller image"
        )


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
