"""PostgreSQL for tests: the service on 127.0.0.1:5432 (trust auth), an admin that makes
and drops databases, and one migrated template per session that each test database is
copied from. Registered as a pytest plugin by tests/conftest.py, so every suite shares
its fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, create_engine, text

from pipeline.state.db import create_db_engine, upgrade
from tests.support.services import need_service

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DATABASE = "test"  # an existing database to connect to while creating others


def pg_url(database: str) -> str:
    return f"postgresql+psycopg2://postgres@{PG_HOST}:{PG_PORT}/{database}"


@dataclass
class PostgresAdmin:
    """Creates and drops uniquely named databases; whatever is left is dropped at session end."""

    engine: Engine
    created: set[str] = field(default_factory=set)

    def create(self, *, template: str | None = None) -> str:
        """A new database (a copy of `template` if given); returns its name."""
        name = f"voicebatch_it_{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        self.created.add(name)
        return name

    def drop(self, name: str) -> None:
        with self.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.discard(name)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[PostgresAdmin]:
    need_service("PostgreSQL", PG_HOST, PG_PORT)
    engine = create_engine(pg_url(PG_ADMIN_DATABASE), isolation_level="AUTOCOMMIT")
    admin = PostgresAdmin(engine)
    yield admin
    for name in sorted(admin.created):
        admin.drop(name)
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_admin: PostgresAdmin) -> Iterator[str]:
    """The name of a database migrated to head, the template every test's database copies."""
    name = pg_admin.create()
    engine = create_db_engine(pg_url(name))
    upgrade(engine)
    engine.dispose()  # CREATE DATABASE ... TEMPLATE refuses a template with open connections
    yield name
    pg_admin.drop(name)
