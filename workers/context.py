"""What a task body is given: the worker process's resources and the worker around it.

`WorkerResources` are the settings, database, stores, cache index and engine: opened once
per worker process (after a fork the database pool must not be shared), the engine
loaded before the first task. `WorkerContext` adds what a task needs of its worker: a
publisher for the messages that follow, its metrics, and whether it is stopping. Tasks
receive both explicitly instead of reaching into the Celery app or module globals.
Besides workers.metrics (a leaf too, with workers.gpu), this module imports nothing from
`workers`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from pipeline.batching import with_batching
from pipeline.config import Settings
from pipeline.engines import Engine, create_engine
from pipeline.engines.base import LowerableEngine
from pipeline.qa.live import LiveQa
from pipeline.render.chunk_index import ChunkIndex, RedisChunkIndex, index_ttl_seconds
from pipeline.render.failures import EngineHealth
from pipeline.state.db import PoolLimits, open_database
from pipeline.storage.base import ObjectStore
from pipeline.storage.factory import open_store, store_at
from pipeline.storage.write_once import WriteOnceStore
from workers.metrics import WorkerMetrics


class TaskPublisher(Protocol):
    """Publishes the messages a task hands on (workers.dispatch.CeleryDispatcher)."""

    def render(
        self,
        job_id: uuid.UUID,
        groups: Sequence[Sequence[uuid.UUID]],
        *,
        engine: str | None = None,
    ) -> None: ...

    def assemble(self, job_id: uuid.UUID, item_ids: Sequence[uuid.UUID]) -> None: ...

    def finalize(self, job_id: uuid.UUID) -> None: ...

    def webhooks(
        self, delivery_ids: Sequence[uuid.UUID], *, countdown: float | None = None
    ) -> None: ...


@dataclass
class WorkerResources:
    """The settings, database, stores, cache index and engine of one worker process."""

    settings: Settings
    factory: sessionmaker[Session]
    chunk_store: ObjectStore
    index: ChunkIndex | None
    _engine: Engine | None = None
    # what the engine did lately, across every task of this process (render.failures)
    health: EngineHealth = field(default_factory=EngineHealth)
    _outputs: dict[str, ObjectStore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _qa: LiveQa | None = None
    # set before the engine loads when this process answers speech requests too
    serves_speech: bool = False
    _speech_engine: Engine | None = None

    @property
    def qa(self) -> LiveQa | None:
        """QA while rendering: the speech recogniser of this process, for the render tasks
        of jobs that ask for QA (loaded at the first check); None without a model folder
        (VOICEBATCH_ASR_MODEL_DIR), when such jobs are rendered unchecked."""
        with self._lock:
            if self._qa is None and self.settings.asr_model_dir is not None:
                self._qa = LiveQa(self.settings.asr_model_dir, retries=self.settings.qa_retries)
            return self._qa

    @classmethod
    def open(cls, settings: Settings) -> WorkerResources:
        # Migrations run once, by `voicebatch db upgrade`, never by each worker.
        factory = open_database(
            settings.resolved_database_url, migrate_sqlite=False, pool=PoolLimits.of(settings)
        )
        redis_url = settings.resolved_redis_url
        return cls(
            settings=settings,
            factory=factory,
            chunk_store=open_store(settings.resolved_storage_url, settings),
            index=(
                RedisChunkIndex.from_url(redis_url, ttl_seconds=index_ttl_seconds(settings))
                if redis_url
                else None
            ),
        )

    @property
    def engine(self) -> Engine:
        """The speech engine, loaded on first use (render workers load it at start-up)."""
        with self._lock:
            if self._engine is None:
                self._engine = self._load_engine()
            return self._engine

    def _load_engine(self) -> Engine:
        # With speech served and an engine that renders one request per call on the CPU
        # (Piper), speech renders on the engine in this process at normal priority and
        # batch work in lowered processes of its own (engines.priority); at nice 0, or
        # with another engine, speech shares the engine in its batcher's realtime lane.
        settings = self.settings
        engine = create_engine(settings)
        niceness = settings.speech_batch_nice if self.serves_speech else 0
        if niceness > 0 and isinstance(engine, LowerableEngine):
            engine, self._speech_engine = engine.split(niceness)
        # One batcher per process: every task thread's requests meet in it.
        lane = self.serves_speech and self._speech_engine is None
        return with_batching(engine, settings, realtime_lane=lane)

    @property
    def speech_engine(self) -> Engine:
        """The engine speech requests render on: this process's own when batch work
        renders in lowered processes, else the batch engine (in its batcher's realtime
        lane)."""
        engine = self.engine
        with self._lock:
            return self._speech_engine or engine

    def output_store(self, uri: str) -> ObjectStore:
        """Where a job's finished files go (its output_uri), each written once (a second
        copy of an assembly step finds its file written and leaves it): a view of the
        chunk store's bucket or folder, sharing its connections; other URIs are opened
        once each."""
        root_url = self.settings.resolved_storage_url
        if uri.startswith(root_url.rstrip("/") + "/"):
            view = store_at(uri, root=self.chunk_store, root_url=root_url, settings=self.settings)
            return WriteOnceStore(view)
        with self._lock:
            if uri not in self._outputs:
                self._outputs[uri] = open_store(uri, self.settings)
            return WriteOnceStore(self._outputs[uri])


@dataclass(frozen=True)
class WorkerContext:
    """Everything a task body receives."""

    resources: WorkerResources
    dispatcher: TaskPublisher
    metrics: WorkerMetrics
    # Set when the worker is stopping (SIGTERM, a spot notice): tasks hand their
    # messages back instead of waiting for more.
    draining: threading.Event
    # Lease owners of the render tasks running in this process: released for other
    # workers if they are still running just before the grace period ends.
    active_owners: set[str]
