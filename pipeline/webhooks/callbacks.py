"""Checking a callback URL where a job or a key names one, before anything is created."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.errors import FieldError
from pipeline.webhooks.addresses import AddressPolicy, CallbackRefused, check_target

MAX_URL_CHARS = 2000


def check_callback_url(url: str | None, settings: Settings, *, field: str) -> str | None:
    """`url` if a webhook may be sent there (http or https, a host, an address the SSRF
    guard allows, a signing secret configured), else a FieldError naming `field`."""
    if url is None:
        return None
    if len(url) > MAX_URL_CHARS:
        raise FieldError(field, f"is {len(url)} characters long; the limit is {MAX_URL_CHARS}")
    if settings.webhook_secret is None:
        raise FieldError(
            field,
            "this server sends no webhooks (VOICEBATCH_WEBHOOK_SECRET is not set); "
            "leave it out or ask the operator",
        )
    try:
        check_target(url, policy=AddressPolicy.of(settings))
    except CallbackRefused as exc:
        raise FieldError(field, exc.message) from exc
    return url
