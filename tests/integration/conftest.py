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
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, load_settings
from pipeline.state.db import create_db_engine, session_factory
from tests.support.postgres import PostgresAdmin, pg_url
from tests.support.s3 import S3_KEY, S3_PREFIX, S3_REGION, s3_client_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


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
