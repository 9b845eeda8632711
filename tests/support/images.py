"""Small real JPEG and PNG images for cover tests, encoded with PyAV."""

from __future__ import annotations

import io

import av
import numpy as np


def image_bytes(kind: str = "jpeg", width: int = 64, height: int = 48) -> bytes:
    """A solid-colour image with a gradient, as a complete JPEG or PNG file."""
    codec, pix = ("mjpeg", "yuvj420p") if kind == "jpeg" else ("png", "rgb24")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, pix
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[:, :, 0] = 200
        pixels[:, :, 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
