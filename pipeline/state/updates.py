"""The one way state rows change: a conditional UPDATE whose match count callers check."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session


def conditional_update(session: Session, table: Any, where: tuple[Any, ...], **values: Any) -> int:
    """UPDATE table SET values WHERE where; returns how many rows matched."""
    result = session.execute(
        update(table).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
