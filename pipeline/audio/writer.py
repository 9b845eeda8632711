"""Encoder threads: FFmpeg encodes off the main thread while it masters the next samples."""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

from pipeline.audio.encode import StreamEncoder, codec_for
from pipeline.engines.base import AudioArray
from pipeline.storage import ObjectStore


class EncoderThread(threading.Thread):
    """Runs encoders off the main thread (FFmpeg releases the GIL): one for the book, one
    for the chapters in turn. Messages: ('open', key, tags), ('audio', array), ('close',)."""

    def __init__(
        self, *, output_store: ObjectStore, rate: int, fmt: str, bitrate_kbps: int | None
    ) -> None:
        super().__init__(daemon=True)
        self.inbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=8)
        self.output_store, self.rate, self.fmt, self.bitrate = output_store, rate, fmt, bitrate_kbps
        self.error: BaseException | None = None

    def run(self) -> None:
        encoder: StreamEncoder | None = None
        sink: Any = None
        key = ""
        while (message := self.inbox.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure so the producer never blocks
            try:
                if message[0] == "open":
                    key = message[1]
                    # Lives until the "close" message, so no with-block can hold it.
                    sink = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115
                    encoder = StreamEncoder(
                        sink, self.rate, self.fmt, bitrate_kbps=self.bitrate, metadata=message[2]
                    )
                elif message[0] == "audio" and encoder is not None:
                    encoder.write(message[1])
                elif message[0] == "close" and encoder is not None:
                    encoder.close()
                    sink.seek(0)
                    self.output_store.put_file(
                        key, sink, content_type=codec_for(self.fmt).content_type
                    )
                    sink.close()
                    encoder = None
            except BaseException as exc:  # handed to the main thread at finish()
                self.error = exc

    def send(self, *message: Any) -> None:
        self.inbox.put(message)

    def finish(self) -> None:
        self.inbox.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def finish_all(workers: list[EncoderThread], failure: BaseException | None) -> None:
    """Stop every worker; raise the main thread's failure first, else a worker's."""
    errors: list[BaseException] = []
    for worker in workers:
        try:
            worker.finish()
        except BaseException as exc:
            errors.append(exc)
    if failure is None and errors:
        raise errors[0]


def write_stream(
    output_store: ObjectStore,
    key: str,
    audio: Iterable[AudioArray],
    *,
    rate: int,
    fmt: str,
    bitrate_kbps: int | None,
    tags: dict[str, str],
) -> None:
    """Encode a stream of sample blocks into one object at `key` (mastering on this thread,
    encoding on another)."""
    writer = EncoderThread(output_store=output_store, rate=rate, fmt=fmt, bitrate_kbps=bitrate_kbps)
    writer.start()
    try:
        writer.send("open", key, tags)
        for block in audio:
            writer.send("audio", block)
        writer.send("close")
    except BaseException as failure:
        finish_all([writer], failure)
        raise
    finish_all([writer], None)
