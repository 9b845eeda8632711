"""Alembic owns the schema: migrations reach head, match the ORM models, and run both ways.

Each check runs on SQLite (a file in tmp_path) and on a fresh PostgreSQL database. The
`voicebatch db upgrade` command is run as a real process against PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from pipeline.state.db import (
    alembic_config,
    create_db_engine,
    current_revision,
    head_revision,
    upgrade,
)
from pipeline.state.models import Base
from tests.support.services import free_port

VOICEBATCH = Path(sys.executable).with_name("voicebatch")
TABLES = {"api_keys", "jobs", "items", "chunks", "webhook_deliveries", "webhook_attempts"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no schema yet, SQLite or PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        url = request.getfixturevalue("pg_empty_url")
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_reaches_head_and_creates_the_tables(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    head = head_revision(empty_engine)
    assert head is not None
    assert upgrade(empty_engine) == head
    assert current_revision(empty_engine) == head
    assert _tables(empty_engine) == TABLES
    assert upgrade(empty_engine) == head  # a second run is a no-op, not an error


def test_models_and_migrations_agree(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    assert _schema_differences(empty_engine) == []


def test_an_unmigrated_database_differs_from_the_models(empty_engine: Engine) -> None:
    # The check above must be able to fail: against an empty schema it finds every table.
    added = {diff[1].name for diff in _schema_differences(empty_engine) if diff[0] == "add_table"}
    assert added == TABLES


def test_downgrade_to_base_then_upgrade_again(empty_engine: Engine) -> None:
    config = alembic_config(empty_engine)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert current_revision(empty_engine) is None
    assert _tables(empty_engine) == set()
    command.upgrade(config, "head")
    assert current_revision(empty_engine) == head_revision(empty_engine)
    assert _schema_differences(empty_engine) == []


def _voicebatch(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    env |= {"VOICEBATCH_DATABASE_URL": database_url, "VOICEBATCH_DATA_DIR": str(cwd / "data")}
    return subprocess.run(
        [str(VOICEBATCH), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_cli_db_upgrade_migrates_postgresql_and_prints_the_revision(
    pg_empty_url: str, tmp_path: Path
) -> None:
    result = _voicebatch("db", "upgrade", database_url=pg_empty_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = create_db_engine(pg_empty_url)
    try:
        head = head_revision(engine)
        assert current_revision(engine) == head
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()
    assert f"revision {head}" in result.stdout


@pytest.fixture(scope="module")
def unreachable_upgrade(
    tmp_path_factory: pytest.TempPathFactory,
) -> subprocess.CompletedProcess[str]:
    """`voicebatch db upgrade` against a port nobody listens on, run once for the tests below."""
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere"
    return _voicebatch("db", "upgrade", database_url=url, cwd=tmp_path_factory.mktemp("cli"))


def test_cli_db_upgrade_on_an_unreachable_database_fails(
    unreachable_upgrade: subprocess.CompletedProcess[str],
) -> None:
    assert unreachable_upgrade.returncode == 75  # RetryableError: try again once it is up
    assert unreachable_upgrade.stderr.startswith("error: database ")
    assert "unreachable" in unreachable_upgrade.stderr
    assert "Traceback" not in unreachable_upgrade.stderr


def test_cli_db_upgrade_on_an_unreachable_database_says_so_in_one_line(
    unreachable_upgrade: subprocess.CompletedProcess[str],
) -> None:
    assert unreachable_upgrade.returncode != 0
    assert len(unreachable_upgrade.stderr.splitlines()) == 1, unreachable_upgrade.stderr
