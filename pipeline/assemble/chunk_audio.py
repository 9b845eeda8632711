"""Reading rendered chunks back for assembly: decoded once, kept while they fit, read ahead."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.audio.master import Segment, oversampled_peaks
from pipeline.audio.process import from_wav_bytes
from pipeline.audio.stitch import ChunkLength
from pipeline.engines.base import AudioArray
from pipeline.errors import ChunkObjectsMissing, NotFoundError, PermanentError
from pipeline.stages import stage
from pipeline.storage.base import ObjectStore

CACHE_BYTES = 512 * 1024 * 1024  # decoded chunks kept between passes; past this, read again


@dataclass(frozen=True)
class ChunkPiece:
    """A rendered chunk as assembly sees it: reading order, object key, recorded length."""

    seq: int
    key: str
    length: ChunkLength


class ChunkAudioCache:
    """Decoded chunk audio (and its oversampled peaks) by object key, kept between
    mastering passes while under a byte budget; past it, read and computed again.

    Reads run ahead of the stream on a few threads (`read_ahead` chunks), so a book kept
    in S3 is not assembled at one request round trip per chunk. Use it as a context
    manager: leaving it stops the readers.
    """

    def __init__(
        self, objects: ObjectStore, budget_bytes: int = CACHE_BYTES, read_ahead: int = 16
    ) -> None:
        self.objects = objects
        self.budget = budget_bytes
        self.kept: dict[str, AudioArray] = {}
        self.peaks: dict[str, npt.NDArray[np.float32]] = {}
        self.size = 0
        self.order: list[str] = []  # keys in stream order, as segments were made
        self.read_ahead = read_ahead
        self.reading: dict[str, Future[bytes]] = {}
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> ChunkAudioCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.reading.clear()

    def segment(self, start: int, piece: ChunkPiece, rate: int) -> Segment:
        def peaks(audio: AudioArray) -> npt.NDArray[np.float32]:
            over = self.peaks.get(piece.key)
            if over is None:
                with stage("master.true_peak"):
                    over = oversampled_peaks(audio)
                if self.size + over.nbytes <= self.budget:
                    self.peaks[piece.key] = over
                    self.size += over.nbytes
            return over

        self.order.append(piece.key)
        return Segment(
            start, piece.length.samples, self.loader(piece, rate, len(self.order) - 1), peaks
        )

    def forget(self, keys: Iterable[str]) -> None:
        """Let go of these chunks' audio and peaks (a chapter done with): memory then
        stays at a chapter or so, however long the book."""
        for key in keys:
            audio = self.kept.pop(key, None)
            if audio is not None:
                self.size -= audio.nbytes
            over = self.peaks.pop(key, None)
            if over is not None:
                self.size -= over.nbytes

    def _read_ahead(self, position: int) -> None:
        if self.read_ahead <= 0:
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chunk-read")
        for key in self.order[position + 1 : position + 1 + self.read_ahead]:
            if key not in self.kept and key not in self.reading:
                self.reading[key] = self.pool.submit(self.objects.get, key)

    def _read(self, key: str) -> bytes:
        pending = self.reading.pop(key, None)
        return pending.result() if pending is not None else self.objects.get(key)

    def loader(self, piece: ChunkPiece, rate: int, position: int = 0) -> Callable[[], AudioArray]:
        def load() -> AudioArray:
            audio = self.kept.get(piece.key)
            if audio is None:
                self._read_ahead(position)
                with stage("assemble.read_chunks"):
                    try:
                        data = self._read(piece.key)
                    except NotFoundError as exc:
                        # Gone since it was rendered (lifecycle expiry, a cleanup): the
                        # chunk is to be rendered again, not the job given up on.
                        raise ChunkObjectsMissing(
                            f"chunk {piece.seq}'s audio {piece.key} is gone", [piece.key]
                        ) from exc
                    audio, chunk_rate = from_wav_bytes(data)
                if chunk_rate != rate or len(audio) != piece.length.samples:
                    raise PermanentError(
                        f"chunk {piece.seq} audio ({len(audio)} samples at {chunk_rate} Hz) does "
                        f"not match its record ({piece.length.samples} at {rate} Hz)"
                    )
                if self.size + audio.nbytes <= self.budget:
                    self.kept[piece.key] = audio
                    self.size += audio.nbytes
            return audio

        return load
