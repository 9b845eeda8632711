"""Database engines, sessions and migrations (Alembic owns the schema)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings
from pipeline.errors import InputError, RetryableError
from pipeline.stages import stage

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def one_line(error: object) -> str:
    """A driver's multi-line message as one line."""
    return " ".join(str(error).split())


@dataclass(frozen=True)
class PoolLimits:
    """A server database's connection pool: `size` kept open, `overflow` more under load,
    and how long a caller waits for a free one (`timeout`, seconds) before SQLAlchemy's
    pool `TimeoutError`. The defaults are SQLAlchemy's own."""

    size: int = 5
    overflow: int = 10
    timeout: float = 30.0

    @classmethod
    def of(cls, settings: Settings) -> PoolLimits:
        """The limits `VOICEBATCH_DB_POOL_SIZE`, `_MAX_OVERFLOW` and `_POOL_TIMEOUT_SECONDS` set."""
        return cls(
            size=settings.db_pool_size,
            overflow=settings.db_max_overflow,
            timeout=settings.db_pool_timeout_seconds,
        )


def create_db_engine(url: str, *, pool: PoolLimits | None = None) -> Engine:
    """An Engine for `url`; SQLite gets WAL, foreign keys and a busy timeout, its folder
    created; any other database a connection pool sized by `pool`."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InputError(f"invalid database URL {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    pool = pool or PoolLimits()
    return create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout,
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def open_database(
    url: str, *, migrate_sqlite: bool, pool: PoolLimits | None = None
) -> sessionmaker[Session]:
    """Sessions on the database at `url`, its schema checked first. With
    `migrate_sqlite`, an embedded SQLite file is brought up to date here (one process
    owns it); any other database must already be current (`voicebatch db upgrade`, run
    once, never by each worker or API process)."""
    db = create_db_engine(url, pool=pool)
    ensure_schema(db, auto_upgrade=migrate_sqlite and db.dialect.name == "sqlite")
    return session_factory(db)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error.
    Its time counts as the "state" stage (pipeline.stages)."""
    with stage("state"), factory() as session, session.begin():
        yield session


def ping(factory: sessionmaker[Session]) -> None:
    """Run a trivial query; raises whatever the driver raises when the database is down."""
    with factory() as session:
        session.execute(text("SELECT 1"))


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection_engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def upgrade(engine: Engine) -> str | None:
    """Migrate the database to the newest schema; returns the revision now in place."""
    from alembic import command

    try:
        if current_revision(engine) != head_revision(engine):
            command.upgrade(alembic_config(engine), "head")
        return current_revision(engine)
    except OperationalError as exc:
        raise RetryableError(
            f"database {engine.url.render_as_string()} unreachable: {one_line(exc.orig)}"
        ) from exc


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Make sure the schema is current: migrate (embedded SQLite) or ask for `voicebatch db upgrade`."""
    try:
        at, head = current_revision(engine), head_revision(engine)
    except OperationalError as exc:
        raise RetryableError(
            f"database {engine.url.render_as_string()} unreachable: {one_line(exc.orig)}"
        ) from exc
    if at == head:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    raise InputError(
        f"database schema is at {at or 'nothing'}, not {head}: run `voicebatch db upgrade`"
    )
