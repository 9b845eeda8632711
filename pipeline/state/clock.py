"""The database's clock. Lease expiry is written and compared inside the UPDATE
statements with the database server's time, so a worker whose clock runs fast (or slow)
can neither steal a live lease nor keep a dead one: every machine asks the same clock.

SQLite (embedded mode, one machine) has no server; its `now` is the process's UTC time,
written as the naive UTC text that `models.UTCDateTime` stores there, so comparisons
with stored values stay text comparisons of one format.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, func, literal
from sqlalchemy.orm import Session

# models.UTCDateTime on SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff"; strftime's %f gives
# milliseconds ("SS.SSS"), so three zeros complete the microseconds.
_SQLITE_NOW = "%Y-%m-%d %H:%M:%f"


def db_now(session: Session, plus: timedelta = timedelta(0)) -> Any:
    """A SQL expression: the database's current UTC time, plus `plus`."""
    if session.get_bind().dialect.name == "sqlite":
        shift = f"{plus.total_seconds():+.6f} seconds"
        return func.strftime(_SQLITE_NOW, "now", shift).op("||")(literal("000"))
    now = func.statement_timestamp(type_=DateTime(timezone=True))
    return now + plus if plus else now


def clock(session: Session, now: datetime | None, plus: timedelta = timedelta(0)) -> Any:
    """`now + plus` when a caller fixes the time (tests, replays); otherwise the
    database's clock plus `plus`, evaluated inside the statement that uses it."""
    return db_now(session, plus) if now is None else now + plus
