"""Submit-API keys: created, looked up by hash, listed, revoked. The key itself is never stored.

Keys are 32 random bytes, so a plain SHA-256 is enough to store them safely (no
dictionary to attack, unlike passwords) and lets a request be checked with one indexed
lookup instead of a slow hash per key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import sys
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pipeline.errors import FieldError, InputError, NotFoundError
from pipeline.state.models import ApiKey, utcnow

KEY_PREFIX = "vb_"

# What a caller may do (API keys and JWTs alike): submit and cancel jobs, read them,
# use the speech routes, and admin, which grants every other scope too.
SCOPES = ("jobs:write", "jobs:read", "speech", "admin")
DEFAULT_SCOPES = ("jobs:read", "jobs:write", "speech")  # a key made without --scope

# One JSON line per authenticated API request and per key created or revoked.
AUDIT_LOG = logging.getLogger("voicebatch.audit")


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is written (as logging's last-resort
    handler does), not to the stream of the moment it was made."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def audit_to_stderr() -> None:
    """Send audit lines to stderr, one JSON object a line, unless logging is already set
    up for `voicebatch.audit` (the server commands call this)."""
    if not AUDIT_LOG.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        AUDIT_LOG.addHandler(handler)
        AUDIT_LOG.setLevel(logging.INFO)
        AUDIT_LOG.propagate = False


def audit(event: str, **fields: Any) -> None:
    """Write one audit line: {"event": ..., **fields} as JSON on `voicebatch.audit`."""
    AUDIT_LOG.info(json.dumps({"event": event, **fields}, default=str, separators=(",", ":")))


def check_scopes(scopes: Iterable[str], *, field: str = "scope") -> tuple[str, ...]:
    """`scopes`, checked against SCOPES, without repeats, in SCOPES' order."""
    chosen = {s.strip() for s in scopes if s.strip()}
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise FieldError(field, f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    if not chosen:
        raise FieldError(field, f"a key needs at least one scope of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in chosen)


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Whether `scopes` allow `needed` (admin allows everything)."""
    held = set(scopes)
    return needed in held or "admin" in held


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session,
    *,
    name: str,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    callback_url: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key for `name` with `scopes` (and the callback URL of its jobs that name
    none, checked by the caller: pipeline.webhooks.callbacks); returns the row and the
    key, which is shown once."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise InputError("a key needs a name of 1 to 200 characters, like `alice`")
    chosen = check_scopes(scopes)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=uuid.uuid4(),
        name=name,
        prefix=key[:11],
        key_hash=hash_key(key),
        created_at=utcnow(),
        scopes=" ".join(chosen),
        callback_url=callback_url,
    )
    session.add(row)
    session.flush()
    return row, key


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The live key row for `key`, or None (unknown or revoked)."""
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


def list_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()


def revoke_key(session: Session, *, ref: str) -> ApiKey:
    """Revoke the key whose id, prefix or name is `ref` (it must name exactly one live key)."""
    ref = ref.strip()
    conditions = [ApiKey.prefix == ref, ApiKey.name == ref]
    with contextlib.suppress(ValueError):
        conditions.append(ApiKey.id == uuid.UUID(ref))
    rows = session.scalars(
        select(ApiKey).where(or_(*conditions), ApiKey.revoked_at.is_(None))
    ).all()
    if not rows:
        raise NotFoundError(f"no live API key {ref!r} (give its id, prefix or name)")
    if len(rows) > 1:
        raise InputError(f"{len(rows)} live keys match {ref!r}; give the key's id or prefix")
    rows[0].revoked_at = utcnow()
    return rows[0]
