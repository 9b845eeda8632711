"""Webhook signatures: the Standard Webhooks test vector, and the official
`standardwebhooks` package as the verifier of what we sign."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from pipeline.config import load_settings
from pipeline.errors import InputError
from pipeline.webhooks.signing import secret_key, secret_keys, signature, signed_headers

# Published with the Standard Webhooks specification (and Svix's documentation).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_spec_test_vector() -> None:
    key = secret_key(SPEC_SECRET)
    assert (
        signature(key, webhook_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)
        == SPEC_SIGNATURE
    )


def test_the_official_library_signs_the_vector_the_same() -> None:
    theirs = Webhook(SPEC_SECRET).sign(
        SPEC_ID, datetime.fromtimestamp(SPEC_TIMESTAMP, UTC), SPEC_BODY
    )
    assert theirs == SPEC_SIGNATURE


def test_the_official_verifier_accepts_our_headers_and_refuses_a_changed_body() -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    body = '{"type":"job.done","data":{"id":"x","title":"Café"}}'.encode()
    headers = signed_headers(
        secret_key(secret), webhook_id="msg_1", timestamp=int(time.time()), body=body
    )
    assert Webhook(secret).verify(body, headers)["type"] == "job.done"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"done", b"fail"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_2"})


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"),
        ("whsec_not-base64!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "the key is 5 bytes"),
    ],
)
def test_a_malformed_secret_is_one_line_naming_the_setting(secret: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        load_settings(webhook_secret=secret)
    message = caught.value.message
    assert "VOICEBATCH_WEBHOOK_SECRET" in message and reason in message
    assert "\n" not in message


def test_an_unpadded_secret_is_read_like_the_official_library_reads_it() -> None:
    unpadded = "whsec_" + base64.b64encode(bytes(range(25))).decode().rstrip("=")
    settings = load_settings(webhook_secret=unpadded)
    assert settings.webhook_secret is not None
    assert secret_key(unpadded) == bytes(range(25))


def _secret(seed: int) -> str:
    return "whsec_" + base64.b64encode(bytes((seed + n) % 256 for n in range(32))).decode()


def test_a_rotation_signs_with_every_secret_and_each_receiver_verifies() -> None:
    new, old, stranger = _secret(1), _secret(100), _secret(200)
    settings = load_settings(webhook_secret=f"{new} {old}")
    assert settings.webhook_secret is not None
    keys = secret_keys(settings.webhook_secret.get_secret_value())
    assert keys == [secret_key(new), secret_key(old)]
    body = b'{"type":"job.done","data":{"id":"x"}}'
    headers = signed_headers(keys, webhook_id="msg_r", timestamp=int(time.time()), body=body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    # a receiver still on the old secret, and one already on the new, both accept it
    assert Webhook(old).verify(body, headers)["type"] == "job.done"
    assert Webhook(new).verify(body, headers)["type"] == "job.done"
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body, headers)


def test_a_bad_secret_in_a_rotation_is_named() -> None:
    with pytest.raises(InputError) as caught:
        load_settings(webhook_secret=f"{_secret(1)} whsec_short")
    message = caught.value.message
    assert "VOICEBATCH_WEBHOOK_SECRET" in message and "secret 2:" in message
    assert "\n" not in message
