"""Encoder threads: FFmpeg encodes off the main thread while it masters the next samples."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from pipeline.audio.encode import FileMeta, StreamEncoder, codec_for
from pipeline.engines.base import AudioArray
from pipeline.stages import stage
from pipeline.storage.base import ObjectStore

# Messages (chunks and pauses) a chapter encoder may have waiting: a typical chapter or
# more, so the producer measures the next chapter while this one encodes, and at most
# some 50 MB of samples, however long the book.
CHAPTER_QUEUE = 48


@dataclass(frozen=True)
class Target:
    """One file to encode: where it goes, its format and what it says about itself."""

    key: str
    fmt: str
    meta: FileMeta
    bitrate_kbps: int | None = None
    file_rate: int | None = None  # resample to this rate (default: the audio's own)


class _OpenFile:
    """A target being encoded: into a spooled temp file, or (MP4, whose index FFmpeg
    moves to the front after writing) a named one."""

    def __init__(self, target: Target, rate: int) -> None:
        self.target = target
        self.path: str | None = None
        self.sink: Any = None
        sink: BinaryIO | str
        if codec_for(target.fmt).container == "mp4":
            handle, self.path = tempfile.mkstemp(prefix="voicebatch-", suffix=".m4b")
            os.close(handle)
            sink = self.path
        else:
            # Lives until the "close" message, so no with-block can hold it.
            self.sink = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115
            sink = self.sink
        try:
            self.encoder = StreamEncoder(
                sink,
                rate,
                target.fmt,
                bitrate_kbps=target.bitrate_kbps,
                meta=target.meta,
                file_rate=target.file_rate,
            )
        except BaseException:
            self.discard()
            raise

    def finish(self, output_store: ObjectStore) -> None:
        with stage(f"encode.{self.target.fmt}"):
            self.encoder.close()
        with stage("store.outputs"):
            self._store(output_store)

    def _store(self, output_store: ObjectStore) -> None:
        content_type = codec_for(self.target.fmt).content_type
        if self.path is not None:
            with open(self.path, "rb") as handle:
                output_store.put_file(self.target.key, handle, content_type=content_type)
        else:
            assert self.sink is not None
            self.sink.seek(0)
            output_store.put_file(self.target.key, self.sink, content_type=content_type)
        self.discard()

    def discard(self) -> None:
        if self.sink is not None:
            self.sink.close()
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)


class EncoderThread(threading.Thread):
    """Runs encoders off the main thread (FFmpeg releases the GIL): one for the book, one
    for the chapters in turn. Messages: ('open', [Target, ...]) starts files that all get
    the same samples (a delivery file and its lossless master), ('audio', array),
    ('close',) finishes and stores them."""

    def __init__(self, *, output_store: ObjectStore, rate: int, queue_size: int = 8) -> None:
        super().__init__(daemon=True)
        self.inbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=queue_size)
        self.output_store, self.rate = output_store, rate
        self.error: BaseException | None = None
        self.files: list[_OpenFile] = []

    def run(self) -> None:
        while (message := self.inbox.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure so the producer never blocks
            try:
                if message[0] == "open":
                    for target in message[1]:
                        self.files.append(_OpenFile(target, self.rate))
                elif message[0] == "audio":
                    for file in self.files:
                        with stage(f"encode.{file.target.fmt}"):
                            file.encoder.write(message[1])
                elif message[0] == "close":
                    while self.files:
                        self.files[0].finish(self.output_store)
                        self.files.pop(0)
            except BaseException as exc:  # handed to the main thread at finish()
                self.error = exc
        for file in self.files:  # a failure left these unfinished
            file.discard()
        self.files.clear()

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
    output_store: ObjectStore, targets: Sequence[Target], audio: Iterable[AudioArray], *, rate: int
) -> None:
    """Encode a stream of sample blocks into every target (mastering on this thread,
    encoding on another)."""
    writer = EncoderThread(output_store=output_store, rate=rate)
    writer.start()
    try:
        writer.send("open", list(targets))
        for block in audio:
            writer.send("audio", block)
        writer.send("close")
    except BaseException as failure:
        finish_all([writer], failure)
        raise
    finish_all([writer], None)
