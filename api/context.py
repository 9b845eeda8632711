"""What every request handler works with: `ApiContext` (settings, database sessions, the
dispatcher, storage, the engine, the rate limiter) and `build_context`, which makes it
and checks the database schema, storage and engine first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis as redis_lib
from sqlalchemy.orm import Session, sessionmaker

from api.limits import RateLimiter
from api.readiness import ProbeCache
from api.tokens import TokenVerifier, token_verifier
from pipeline.config import Settings
from pipeline.engines import EngineInfo, engine_info
from pipeline.state.db import PoolLimits, open_database
from pipeline.storage.base import ObjectStore
from pipeline.storage.factory import open_store, store_at


class Dispatcher(Protocol):
    """Publishes task messages (workers.dispatch.CeleryDispatcher in production)."""

    def render(self, job_id: uuid.UUID, groups: Any) -> None: ...

    def speech(self, message: dict[str, object], *, engine: str) -> None: ...

    def webhooks(self, delivery_ids: Any) -> None: ...

    def ping(self, timeout: float = 3.0) -> None: ...


@dataclass
class ApiContext:
    """The application's shared state, made once by `build_context` (app.state.context)."""

    settings: Settings
    factory: sessionmaker[Session]
    dispatcher: Dispatcher
    chunk_store: ObjectStore
    engine: EngineInfo
    limiter: RateLimiter | None
    redis: Any
    tokens: TokenVerifier | None = None  # JWTs accepted beside API keys, if configured
    readiness: ProbeCache = field(default_factory=ProbeCache)  # /readyz's last answers

    def folder(self, uri: str) -> ObjectStore:
        """The storage folder at `uri` (a job's output folder)."""
        return store_at(
            uri,
            root=self.chunk_store,
            root_url=self.settings.resolved_storage_url,
            settings=self.settings,
        )


def build_context(settings: Settings, dispatcher: Dispatcher, *, redis: Any = None) -> ApiContext:
    """The context for `settings`. Checks the database schema, storage and engine first;
    without a `redis` client one is made from the settings' Redis URL, if any."""
    tokens = token_verifier(settings)  # JWT settings first: a bad one is a one-line stop
    factory = open_database(
        settings.resolved_database_url, migrate_sqlite=False, pool=PoolLimits.of(settings)
    )
    if redis is None and settings.resolved_redis_url:
        redis = redis_lib.Redis.from_url(
            settings.resolved_redis_url, socket_timeout=3, socket_connect_timeout=3
        )
    return ApiContext(
        settings=settings,
        factory=factory,
        dispatcher=dispatcher,
        chunk_store=open_store(settings.resolved_storage_url, settings),
        engine=engine_info(settings),
        limiter=RateLimiter(redis, settings.api_rate_limit) if redis is not None else None,
        redis=redis,
        tokens=tokens,
    )
