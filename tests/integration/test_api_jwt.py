"""JWT bearer tokens beside API keys (issue 20, section 3), against keys the tests make
and a JWKS endpoint they serve (a real HTTP server on a free port): RS256 and ES256
tokens accepted, their scopes and tenant honoured, every attack answered 401, the key
set fetched once and again on an unknown kid, and bad settings stopping start-up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from api.app import create_app
from api.tokens import TokenVerifier, tenant_id
from pipeline.errors import InputError
from tests.integration import test_api as shared
from tests.integration.test_api import TEXT, Api
from tests.support.services import free_port

pytestmark = pytest.mark.integration

redis_dbs, keys, make_api = shared.redis_dbs, shared.keys, shared.make_api

ISSUER = "https://idp.test/"
AUDIENCE = "voicebatch"


@dataclass
class Jwks:
    """A JWKS endpoint: serves `keys` as they are at each request, counting requests."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    served = Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.fetches += 1
            body = json.dumps({"keys": served.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


@dataclass
class Signer:
    kid: str
    private: Any
    algorithm: str

    def public_jwk(self) -> dict[str, Any]:
        maker = RSAAlgorithm if self.algorithm == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = maker.to_jwk(self.private.public_key(), as_dict=True)
        return jwk | {"kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "team-blue",
            "iat": now,
            "exp": now + 300,
            "scope": "jobs:read jobs:write",
        } | claims
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, self.private, algorithm=self.algorithm, headers={"kid": self.kid}
        )


def rsa_signer(kid: str) -> Signer:
    return Signer(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_signer(kid: str) -> Signer:
    return Signer(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def signers(jwks: Jwks) -> tuple[Signer, Signer]:
    made = (rsa_signer("rsa-1"), ec_signer("ec-1"))
    jwks.keys = [s.public_jwk() for s in made]
    return made


@pytest.fixture
def jwt_api(make_api: Callable[..., Api], jwks: Jwks, signers: Any) -> Api:
    return make_api(jwt_jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_rs256_and_es256_tokens_submit_and_read_as_their_subject(
    jwt_api: Api, signers: tuple[Signer, Signer], jwks: Jwks
) -> None:
    rsa_key, ec_key = signers
    made = jwt_api.client.post("/v1/jobs", json={"text": TEXT}, headers=bearer(rsa_key.token()))
    assert made.status_code == 201, made.text
    job = made.json()["id"]
    # The same subject through another key of the set: the same tenant.
    seen = jwt_api.client.get(f"/v1/jobs/{job}", headers=bearer(ec_key.token()))
    assert seen.status_code == 200, seen.text
    # Another subject, or an API key, is another tenant.
    other = jwt_api.client.get(f"/v1/jobs/{job}", headers=bearer(ec_key.token(sub="team-red")))
    assert other.status_code == 404
    assert jwt_api.client.get(f"/v1/jobs/{job}", headers=jwt_api.auth("alice")).status_code == 404
    assert jwks.fetches == 1  # the set is cached


def test_token_scopes_are_enforced(jwt_api: Api, signers: tuple[Signer, Signer]) -> None:
    reader = signers[0].token(scope="jobs:read")
    refused = jwt_api.client.post("/v1/jobs", json={"text": TEXT}, headers=bearer(reader))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == "this sub lacks the jobs:write scope"
    assert jwt_api.client.get("/v1/jobs", headers=bearer(reader)).status_code == 200
    listed = signers[1].token(scope=None, scp=["admin"])
    assert jwt_api.client.post("/v1/jobs", json={"text": TEXT}, headers=bearer(listed)).is_success


def _attacks(signer: Signer) -> dict[str, str]:
    good = signer.token()
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered = b64(json.dumps(claims | {"sub": "team-red"}).encode())
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    hs_mac = hmac.new(signer.public_pem(), f"{hs_header}.{payload}".encode(), hashlib.sha256)
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": signer.kid}).encode())
    stranger = rsa_signer(signer.kid)  # a key the server never saw, claiming a known kid
    return {
        "alg none": f"{none_header}.{payload}.",
        "HS256 signed with the public key": f"{hs_header}.{payload}.{b64(hs_mac.digest())}",
        "expired": signer.token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "wrong audience": signer.token(aud="another-service"),
        "wrong issuer": signer.token(iss="https://evil.test/"),
        "unknown kid": rsa_signer("rsa-unknown").token(),
        "tampered payload": f"{header}.{tampered}.{signature}",
        "signed by another key": stranger.token(),
        "no subject": signer.token(sub=None),
        "no expiry": signer.token(exp=None),
        "garbage": "a.b.c",
    }


def test_attacks_are_401(jwt_api: Api, signers: tuple[Signer, Signer]) -> None:
    for name, token in _attacks(signers[0]).items():
        response = jwt_api.client.get("/v1/jobs", headers=bearer(token))
        assert response.status_code == 401, (name, response.text)
        error = response.json()["error"]["message"]
        assert error.startswith("invalid token") and "\n" not in error, (name, error)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_clock_leeway(jwt_api: Api, signers: tuple[Signer, Signer]) -> None:
    late = signers[0].token(exp=int(time.time()) - 10)  # inside the 30 s leeway
    assert jwt_api.client.get("/v1/jobs", headers=bearer(late)).status_code == 200


def test_unknown_kid_fetches_the_set_again(
    jwt_api: Api, signers: tuple[Signer, Signer], jwks: Jwks
) -> None:
    context = jwt_api.client.app.state.context  # type: ignore[attr-defined]
    # No cooldown between fetches here (30 s by default), so rotation shows at once.
    context.tokens = TokenVerifier(jwt_api.settings, refetch_cooldown=0.0)
    assert jwt_api.client.get("/v1/jobs", headers=bearer(signers[0].token())).status_code == 200
    assert jwks.fetches == 1
    rotated = rsa_signer("rsa-2")
    jwks.keys = [*jwks.keys, rotated.public_jwk()]
    assert jwt_api.client.get("/v1/jobs", headers=bearer(rotated.token())).status_code == 200
    assert jwks.fetches == 2
    assert jwt_api.client.get("/v1/jobs", headers=bearer(rotated.token())).status_code == 200
    assert jwks.fetches == 2


def test_a_key_file_instead_of_a_jwks_url(make_api: Callable[..., Api], tmp_path: Path) -> None:
    signer = ec_signer("file")
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(signer.public_pem())
    api = make_api(jwt_key_file=key_file, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    assert api.client.get("/v1/jobs", headers=bearer(signer.token())).status_code == 200
    assert api.client.get("/v1/jobs", headers=bearer(ec_signer("x").token())).status_code == 401


def test_tenant_is_the_subject_of_the_issuer() -> None:
    assert tenant_id(ISSUER, "a") == tenant_id(ISSUER, "a") != tenant_id(ISSUER, "b")
    assert tenant_id(ISSUER, "a") != tenant_id("https://other/", "a")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"jwt_jwks_url": "http://x/jwks", "jwt_audience": AUDIENCE}, "VOICEBATCH_JWT_ISSUER"),
        ({"jwt_jwks_url": "http://x/jwks", "jwt_issuer": ISSUER}, "VOICEBATCH_JWT_AUDIENCE"),
        ({"jwt_jwks_url": "ftp://x/jwks", "jwt_issuer": ISSUER}, "VOICEBATCH_JWT_JWKS_URL"),
        ({"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}, "VOICEBATCH_JWT_JWKS_URL"),
        (
            {"jwt_key_file": Path("/no.pem"), "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE},
            "VOICEBATCH_JWT_KEY_FILE",
        ),
    ],
)
def test_bad_jwt_settings_stop_start_up(
    make_api: Callable[..., Api], settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(InputError) as raised:
        make_api(**settings)
    assert named in raised.value.message and "\n" not in raised.value.message


def test_bad_key_file_is_named(make_api: Callable[..., Api], tmp_path: Path) -> None:
    hs = tmp_path / "secret.pem"
    hs.write_text("not a key")
    with pytest.raises(InputError, match="not a PEM public key"):
        make_api(jwt_key_file=hs, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InputError, match="P-256"):
        create_app(
            make_api().settings.model_copy(
                update={"jwt_key_file": p384, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
            ),
            dispatcher=None,  # type: ignore[arg-type]  # refused before it is used
        )


def test_an_unreachable_jwks_endpoint_is_503_not_401(
    make_api: Callable[..., Api], signers: tuple[Signer, Signer]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/jwks.json"
    api = make_api(jwt_jwks_url=dead, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    response = api.client.get("/v1/jobs", headers=bearer(signers[0].token()))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
