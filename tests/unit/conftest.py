from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.state.db import create_db_engine, session_factory, upgrade


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated SQLite database (tests/integration overrides this with PostgreSQL)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()
