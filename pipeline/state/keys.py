"""Submit-API keys: created, looked up by hash, listed, revoked. The key itself is never stored.

Keys are 32 random bytes, so a plain SHA-256 is enough to store them safely (no
dictionary to attack, unlike passwords) and lets a request be checked with one indexed
lookup instead of a slow hash per key.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError
from pipeline.state.models import ApiKey, utcnow

KEY_PREFIX = "vb_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, name: str) -> tuple[ApiKey, str]:
    """A new key for `name`; returns the row and the key, which is shown once."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise InputError("a key needs a name of 1 to 200 characters, like `alice`")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=uuid.uuid4(), name=name, prefix=key[:11], key_hash=hash_key(key), created_at=utcnow()
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
