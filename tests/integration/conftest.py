"""Real services for integration tests: PostgreSQL databases and an S3 API server (moto).

PostgreSQL: one migrated template database per session; every test that asks for `db`
gets its own database copied from it (fast, and no test sees another's rows). The
service is expected on 127.0.0.1:5432 with trust auth; without it the tests skip, or
fail when CI is set. S3: a moto server on a free port for the session, and a fresh
bucket per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, load_settings
from pipeline.state.db import create_db_engine, session_factory, upgrade
from tests.conftest import free_port, need_service

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DATABASE = "test"  # an existing database to connect to while creating others
S3_REGION = "us-east-1"
S3_KEY = "testing"


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


@pytest.fixture
def pg_migrated_url(pg_admin: PostgresAdmin, pg_template: str) -> Iterator[str]:
    """The URL of a private PostgreSQL database already at the newest schema."""
    name = pg_admin.create(template=pg_template)
    yield pg_url(name)
    pg_admin.drop(name)


@pytest.fixture
def pg_empty_url(pg_admin: PostgresAdmin) -> Iterator[str]:
    """The URL of a private, empty PostgreSQL database (no schema at all)."""
    name = pg_admin.create()
    yield pg_url(name)
    pg_admin.drop(name)


@pytest.fixture
def db(pg_migrated_url: str) -> Iterator[sessionmaker[Session]]:
    """Overrides tests/unit's SQLite `db`: a migrated PostgreSQL database of this test's own."""
    engine = create_db_engine(pg_migrated_url)
    yield session_factory(engine)
    engine.dispose()


# --- S3 ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 API server on a free local port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_client_for(endpoint: str) -> S3Client:
    """A plain boto3 client on the test S3 server, for tests' own checks."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3_client(s3_endpoint: str) -> S3Client:
    """A plain boto3 client for the test's own checks (listing, creating buckets)."""
    return s3_client_for(s3_endpoint)


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> str:
    """A fresh, empty bucket of this test's own."""
    name = f"it-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


S3_PREFIX = "audio/v1"


@pytest.fixture
def s3_settings(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> Settings:
    """Test-tone settings whose chunk storage is s3://<fresh bucket>/audio/v1 on the moto server."""
    return load_settings(
        engine="test-tone",
        data_dir=tmp_path / "data",
        output_format="wav",
        storage_url=f"s3://{s3_bucket}/{S3_PREFIX}",
        s3_endpoint_url=s3_endpoint,
        s3_region=S3_REGION,
        s3_access_key_id=S3_KEY,
        s3_secret_access_key=S3_KEY,
    )
