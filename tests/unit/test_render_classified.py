"""The renderer acting on what a failure says: a broken engine fails no chunk, a chunk's
own error fails it only after its attempts, passing storage trouble is ridden out in
place without using up attempts, and a hung batch is handed back by the watchdog."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, load_settings
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.testing import STICKY_CUDA_ERROR, TestToneEngine
from pipeline.errors import EngineBroken, EngineHung, InputError, RetryableError
from pipeline.render.failures import EngineHealth
from pipeline.render.renderer import ChunkRenderer
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ChunkStatus
from pipeline.storage.local import LocalObjectStore
from tests.support.state import lease, new_job


class Scripted(TestToneEngine):
    """The test engine, failing as told: `broken` after that many renders (a sticky CUDA
    error), `poison` on texts containing it (an unexpected error of that chunk), or
    hanging on every render while `hang` is not set."""

    def __init__(self, *, broken: int | None = None, poison: str | None = None) -> None:
        super().__init__()
        self.broken, self.poison = broken, poison
        self.error: str | None = None  # the poison's error message, if not the text's
        self.hang: threading.Event | None = None
        self.texts: list[str] = []

    def render_one(self, request: SynthesisRequest) -> SynthesisResult:
        if self.hang is not None:
            assert self.hang.wait(60)
        if self.broken is not None and len(self.texts) >= self.broken:
            raise RuntimeError(STICKY_CUDA_ERROR)
        if self.poison and self.poison in request.text:
            raise ValueError(self.error or f"the tokenizer choked on {request.text!r}")
        self.texts.append(request.text)
        return super().render_one(request)

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        return [self.render_one(request) for request in requests]


class FlakyStore(LocalObjectStore):
    """A local store whose first `failures` writes fail the way S3's 503s do."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.lock = threading.Lock()

    def put_if_absent(self, key: str, data: bytes, *, content_type: str | None = None) -> bool:
        with self.lock:
            self.failures -= 1
            failing = self.failures >= 0
        if failing:
            raise RetryableError(f"S3 request for {key} failed: SlowDown (503)")
        return super().put_if_absent(key, data, content_type=content_type)


def _renderer(
    db: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
    engine: TestToneEngine,
    store_: LocalObjectStore | None = None,
    **kw: object,
) -> ChunkRenderer:
    return ChunkRenderer(
        factory=db,
        store_=store_ or LocalObjectStore(tmp_path / "objects"),
        engine=engine,
        settings=settings,
        owner="me",
        **kw,  # type: ignore[arg-type]
    )


def _chunks(db: sessionmaker[Session], job_id: uuid.UUID) -> list[store.Chunk]:
    with transaction(db) as session:
        return [
            chunk
            for item in store.job_items(session, job_id=job_id)
            for chunk in store.item_chunks(session, item_id=item.id)
        ]


def _render_all(renderer: ChunkRenderer, db: sessionmaker[Session], job_id: uuid.UUID) -> None:
    """Lease and render until nothing is left to lease (as render_job does, one at a time
    once a chunk failed)."""
    while leases := lease(db, job_id, renderer.owner, limit=4):
        with renderer.heartbeat():
            renderer.render_leases(leases, voice="tone", params={})


def test_a_sticky_device_error_fails_no_chunk_and_says_the_engine_is_broken(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    job_id = new_job(db, chunks_per_item=(4, 4))
    renderer = _renderer(db, settings, tmp_path, Scripted(broken=4))  # the first batch works
    with pytest.raises(EngineBroken, match="illegal memory access"):
        _render_all(renderer, db, job_id)
    with transaction(db) as session:
        store.release_leases(session, owner="me")  # what every driver's `finally` does
    chunks = _chunks(db, job_id)
    assert [c.status for c in chunks].count(ChunkStatus.DONE) == 4
    assert all(c.status in (ChunkStatus.DONE, ChunkStatus.PENDING) for c in chunks)
    assert all(c.attempts == 0 for c in chunks if c.status == ChunkStatus.PENDING)
    assert renderer.stats.failed == 0


def test_the_same_unexpected_error_on_chunk_after_chunk_is_a_broken_engine(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    job_id = new_job(db, chunks_per_item=(6,))
    health = EngineHealth()  # shared by the renderers of one process, as a worker's are
    engine = Scripted(poison="text")  # every chunk's text: the engine, not a chunk, is bad
    engine.error = "expected all tensors to be on the same device, found cuda:0 and cpu"
    held = lease(db, job_id, "me", limit=6)
    with pytest.raises(EngineBroken, match="3 different chunks in a row"):
        for chunk in held:  # one chunk per message, a renderer each
            renderer = _renderer(db, settings, tmp_path, engine, health=health)
            renderer.render_leases([chunk], voice="tone", params={})
    with transaction(db) as session:
        store.release_leases(session, owner="me")
    assert not any(c.status == ChunkStatus.FAILED for c in _chunks(db, job_id))


def test_a_chunk_that_fails_on_its_own_fails_after_its_attempts_and_alone(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    job_id = new_job(db, chunks_per_item=(2, 3))
    settings = settings.model_copy(update={"max_attempts": 3})
    renderer = _renderer(db, settings, tmp_path, Scripted(poison="text 1.1"))
    renderer.backoff = 0.0
    _render_all(renderer, db, job_id)
    chunks = _chunks(db, job_id)
    (failed,) = [c for c in chunks if c.status == ChunkStatus.FAILED]
    assert failed.text == "text 1.1" and failed.attempts == 3  # not on its first attempt
    assert "tokenizer choked" in (failed.error or "")
    assert all(c.status == ChunkStatus.DONE for c in chunks if c is not failed)


def test_passing_storage_trouble_is_retried_in_place_and_uses_no_attempt(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    job_id = new_job(db, chunks_per_item=(4,))
    # one attempt: before, any failure of a write failed its chunk for good
    settings = settings.model_copy(update={"max_attempts": 1, "task_retry_seconds": 30})
    engine = Scripted()
    flaky = FlakyStore(tmp_path / "objects", failures=6)
    renderer = _renderer(db, settings, tmp_path, engine, flaky)
    _render_all(renderer, db, job_id)
    chunks = _chunks(db, job_id)
    assert all(c.status == ChunkStatus.DONE and c.attempts == 1 for c in chunks)
    assert sorted(engine.texts) == sorted(c.text for c in chunks)  # each rendered once
    assert renderer.stats.transient_retries >= 6 and renderer.stats.failed == 0


def test_storage_trouble_past_the_budget_hands_the_chunks_back_without_an_attempt(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    job_id = new_job(db, chunks_per_item=(2,))
    settings = settings.model_copy(update={"max_attempts": 1, "task_retry_seconds": 0})
    flaky = FlakyStore(tmp_path / "objects", failures=100)
    renderer = _renderer(db, settings, tmp_path, Scripted(), flaky)
    with pytest.raises(RetryableError, match="SlowDown"):
        _render_all(renderer, db, job_id)
    with transaction(db) as session:
        store.release_leases(session, owner="me")
    assert all(c.status == ChunkStatus.PENDING and c.attempts == 0 for c in _chunks(db, job_id))


def test_a_batch_past_max_batch_seconds_is_handed_back_and_the_worker_told_to_exit(
    db: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    job_id = new_job(db, chunks_per_item=(3,))
    settings = settings.model_copy(update={"max_batch_seconds": 1.0, "lease_seconds": 6})
    engine = Scripted()
    engine.hang = threading.Event()
    hung: list[EngineHung] = []

    def on_hung(exc: EngineHung) -> None:  # the default ends the process
        hung.append(exc)
        assert engine.hang is not None
        engine.hang.set()

    renderer = _renderer(db, settings, tmp_path, engine, on_hung=on_hung)
    leases = lease(db, job_id, "me")
    with renderer.heartbeat() as heartbeat:
        renderer.render_leases(leases, voice="tone", params={})
    (exc,) = hung
    assert "VOICEBATCH_MAX_BATCH_SECONDS=1" in str(exc) and heartbeat.overran
    # handed back, the attempt counted (a chunk that hangs the engine each time fails
    # after its attempts); the engine's late results are not recorded as done
    chunks = _chunks(db, job_id)
    assert all(c.status == ChunkStatus.PENDING and c.lease_owner is None for c in chunks)
    assert all("hung" in (c.error or "") for c in chunks)
    assert renderer.stats.lost == 3 and renderer.stopping.is_set()


def test_max_batch_seconds_is_checked_at_start_up() -> None:
    assert load_settings(max_batch_seconds="120").max_batch_seconds == 120
    with pytest.raises(InputError, match="VOICEBATCH_MAX_BATCH_SECONDS"):
        load_settings(max_batch_seconds="0")
    with pytest.raises(InputError, match="longer than batch_wait_ms"):
        load_settings(max_batch_seconds="2", batch_wait_ms="5000")
