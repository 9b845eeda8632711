"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the signature is
HMAC-SHA256 under the secret's key (the base64 after `whsec_`), sent base64-encoded
after `v1,` in `webhook-signature`. Several secrets (a rotation) give several
signatures, separated by spaces as the spec allows; a receiver accepts a message when
any one of them verifies under its secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from pipeline.config import check_webhook_secret, webhook_secret_keys


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (ValueError, one line, when it is malformed)."""
    return check_webhook_secret(secret)


def signature(key: bytes, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def secret_keys(secrets: str) -> list[bytes]:
    """The HMAC keys of VOICEBATCH_WEBHOOK_SECRET: one secret or several, space-separated
    (a rotation)."""
    return webhook_secret_keys(secrets)


def signed_headers(
    keys: bytes | Sequence[bytes], *, webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt: a signature by each key."""
    signatures = [
        signature(key, webhook_id=webhook_id, timestamp=timestamp, body=body)
        for key in ([keys] if isinstance(keys, bytes) else keys)
    ]
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
