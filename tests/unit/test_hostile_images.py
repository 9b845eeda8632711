"""Decompression-bomb covers (issue 21): an image is measured from its header and refused
over the pixel limit before anything decodes it, given with a request or inside an EPUB."""

from __future__ import annotations

import logging
import resource
import struct
import time
import zlib
from pathlib import Path

import pytest

from pipeline.audio.cover import MAX_COVER_PIXELS, cover_from_bytes, declared_size, document_cover
from pipeline.errors import FieldError, InputError
from pipeline.ingest import load_source, parse_source
from pipeline.plan.documents import cover_from_request
from tests.support import epubs
from tests.support.images import image_bytes


def png_bomb(width: int = 16000, height: int = 16000) -> bytes:
    """A valid 8-bit grey PNG of `width` x `height` black pixels: a few hundred KB that
    would decode to width x height bytes (256 MB at 16000 x 16000), compressed a row at a
    time so that the test itself stays small."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to declare another size."""
    data = bytearray(image_bytes("jpeg", 64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_png_bomb_is_refused_from_its_header_without_decoding() -> None:
    bomb = png_bomb()
    assert len(bomb) < 2_000_000
    before = peak_mb()
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        cover_from_bytes(bomb, name="cover")
    assert time.perf_counter() - started < 0.5
    assert peak_mb() - before < 50  # decoding it would take 256 MB
    message = caught.value.message
    assert message == (
        "cover: 16000 x 16000 pixels is over the cover limit of 9,000,000 pixels "
        "(3000 x 3000); give a smaller image"
    )


def test_a_request_cover_bomb_names_the_field() -> None:
    with pytest.raises(FieldError) as caught:
        cover_from_request(png_bomb(), field="cover")
    assert caught.value.field == "cover"
    assert "16000 x 16000 pixels" in caught.value.message


@pytest.mark.parametrize(("width", "height"), [(16000, 16000), (9001, 1000), (3001, 3000)])
def test_a_jpeg_declaring_too_many_pixels_is_refused(width: int, height: int) -> None:
    with pytest.raises(InputError, match=f"{width} x {height} pixels is over the cover limit"):
        cover_from_bytes(jpeg_declaring(width, height))


def test_covers_within_the_limit_still_decode() -> None:
    assert declared_size(image_bytes("jpeg", 64, 48), "jpeg") == (64, 48)
    assert declared_size(image_bytes("png", 30, 20), "png") == (30, 20)
    cover = cover_from_bytes(image_bytes("png", 3000, 3000))
    assert (cover.width, cover.height) == (3000, 3000)
    assert cover.width * cover.height == MAX_COVER_PIXELS
    portrait = cover_from_bytes(image_bytes("jpeg", 1600, 2560))
    assert (portrait.width, portrait.height) == (1600, 2560)


def test_a_truncated_header_is_refused_not_decoded() -> None:
    with pytest.raises(
        InputError, match=r"the PNG image cannot be decoded \(a PNG without its IHDR"
    ):
        cover_from_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(InputError, match=r"the JPEG image cannot be decoded \(no JPEG header"):
        cover_from_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 8)


def test_an_epub_cover_bomb_is_left_out_unread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bomb.epub"
    path.write_bytes(epubs.epub3_book(cover=png_bomb()))
    document = parse_source(load_source(path))
    assert document.cover is not None  # the reader found it; the check refuses it
    before = peak_mb()
    with caplog.at_level(logging.WARNING):
        assert document_cover(document) is None
    assert peak_mb() - before < 50
    assert "the book's cover: 16000 x 16000 pixels is over the cover limit" in caplog.text
