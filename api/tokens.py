"""JWT bearer tokens (OIDC access tokens) beside API keys: `TokenVerifier`.

The keys come from a JWKS URL (`VOICEBATCH_JWT_JWKS_URL`: fetched once, cached, fetched
again when a token names a `kid` the cache lacks) or from one PEM public key
(`VOICEBATCH_JWT_KEY_FILE`). Only RS256 and ES256 are accepted, chosen by us and never
by the token: `alg: none` and HS256 "signed" with the public key are refused before any
key is looked at. The issuer and audience are checked, `exp` is required, and the clocks
may differ by `VOICEBATCH_JWT_LEEWAY_SECONDS`. The subject is the tenant: its jobs are
owned by `tenant_id(issuer, sub)`. Scopes come from the `scope` claim (space-separated,
as OAuth 2 writes it) or `scp` (a list).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from api.errors import Unauthorized
from pipeline.config import Settings
from pipeline.errors import InputError, RetryableError
from pipeline.state.keys import SCOPES

ALGORITHMS = ("RS256", "ES256")
# A token's tenant id: the same subject of the same issuer is always the same tenant.
TENANTS = uuid.UUID("5b0c3d4e-8a51-4e0f-9a57-7c1d2f3a9e10")


def tenant_id(issuer: str, subject: str) -> uuid.UUID:
    """The owner id of the jobs a token's subject submits."""
    return uuid.uuid5(TENANTS, f"{issuer}\n{subject}")


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    tenant: uuid.UUID
    scopes: frozenset[str]


def looks_like_jwt(credential: str) -> bool:
    """Three base64url parts (API keys start with `vb_` and have no dots)."""
    return credential.count(".") == 2 and not credential.startswith("vb_")


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(str(name) for name in names if name in SCOPES)


def _public_key(given: Path | str) -> Any:
    path = Path(given)
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise InputError(
            f"VOICEBATCH_JWT_KEY_FILE {path}: cannot read it ({exc.strerror})"
        ) from exc
    except ValueError as exc:
        raise InputError(f"VOICEBATCH_JWT_KEY_FILE {path}: not a PEM public key") from exc
    if isinstance(key, rsa.RSAPublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise InputError(
        f"VOICEBATCH_JWT_KEY_FILE {path}: an RSA (RS256) or P-256 (ES256) public key is needed"
    )


class TokenVerifier:
    """Checks bearer JWTs against the configured keys, issuer and audience."""

    def __init__(self, settings: Settings, *, refetch_cooldown: float = 30.0) -> None:
        self.issuer = settings.jwt_issuer or ""
        self.audience = settings.jwt_audience or ""
        self.leeway = settings.jwt_leeway_seconds
        self._key: Any = None
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwt_jwks_url:
            # Unknown kids fetch the set again, but at most once per cooldown: a stream
            # of made-up kids must not turn into a stream of requests to the IdP.
            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url,
                cache_jwk_set=True,
                lifespan=300,
                timeout=5,
                cooldown_duration=refetch_cooldown,
            )
        elif settings.jwt_key_file:
            self._key = _public_key(settings.jwt_key_file)

    def _signing_key(self, header: dict[str, Any]) -> Any:
        if self._jwks is None:
            return self._key
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("invalid token: its header names no key (kid)")
        try:
            return self._jwks.get_signing_key(kid).key
        except jwt.PyJWKClientConnectionError as exc:
            raise RetryableError("the token keys (JWKS) cannot be fetched; try again") from exc
        except jwt.PyJWKClientError as exc:
            raise Unauthorized(f"invalid token: unknown key id {kid[:64]!r}") from exc

    def verify(self, token: str) -> TokenClaims:
        """The token's subject, tenant and scopes; Unauthorized if anything is wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token: not a JWT") from exc
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise Unauthorized(
                f"invalid token: algorithm {str(algorithm)[:16]!r} is not accepted "
                f"(only {', '.join(ALGORITHMS)})"
            )
        key = self._signing_key(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise Unauthorized(f"invalid token: {reason}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise Unauthorized("invalid token: its subject (sub) is empty")
        return TokenClaims(subject, tenant_id(self.issuer, subject), _scopes(claims))


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """The verifier the settings ask for, or None (API keys only). Checked at start-up:
    a setting that cannot work stops the server with one line naming it."""
    url, path = settings.jwt_jwks_url, settings.jwt_key_file
    if url is None and path is None:
        if settings.jwt_issuer or settings.jwt_audience:
            raise InputError(
                "VOICEBATCH_JWT_ISSUER/AUDIENCE are set but no keys: set "
                "VOICEBATCH_JWT_JWKS_URL or VOICEBATCH_JWT_KEY_FILE"
            )
        return None
    if url is not None and path is not None:
        raise InputError("set VOICEBATCH_JWT_JWKS_URL or VOICEBATCH_JWT_KEY_FILE, not both")
    if url is not None and not url.startswith(("https://", "http://")):
        raise InputError(f"VOICEBATCH_JWT_JWKS_URL must be an http(s) URL, not {url[:80]!r}")
    if not settings.jwt_issuer:
        raise InputError("JWTs need VOICEBATCH_JWT_ISSUER (the `iss` tokens must carry)")
    if not settings.jwt_audience:
        raise InputError("JWTs need VOICEBATCH_JWT_AUDIENCE (the `aud` tokens must carry)")
    return TokenVerifier(settings)
