"""`voicebatch api --tls-cert --tls-key [--tls-client-ca]` as a real process (issue 20):
HTTPS with TLS 1.2 or newer, and mutual TLS, with certificates this test makes; bad
TLS options stop the command with one line naming the problem."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.state.db import create_db_engine, session_factory, transaction
from pipeline.state.keys import create_key
from tests.support.services import free_port, private_redis_url
from tests.support.stack import VOICEBATCH, stop_processes

pytestmark = pytest.mark.integration


@dataclass
class Issued:
    cert: Path
    key: Path


def _write(folder: Path, name: str, cert: x509.Certificate, key: Any) -> Issued:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert_path, key_path)


def _certificate(
    subject: str,
    key: Any,
    *,
    issuer: tuple[x509.Certificate, Any] | None = None,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


@dataclass
class Pki:
    ca: Path  # signs the server's certificate (clients trust it)
    server: Issued
    client_ca: Path  # signs client certificates (the server trusts it with --tls-client-ca)
    client: Issued
    stranger: Issued  # a client certificate from a CA the server does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")

    def authority(name: str) -> tuple[x509.Certificate, Any, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ca=True)
        return cert, key, _write(folder, name, cert, key).cert

    ca, ca_key, ca_path = authority("test-ca")
    client_ca, client_ca_key, client_ca_path = authority("client-ca")
    other_ca, other_ca_key, _ = authority("other-ca")

    def leaf(name: str, issuer: tuple[x509.Certificate, Any], server: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        return _write(folder, name, _certificate(name, key, issuer=issuer, server=server), key)

    return Pki(
        ca=ca_path,
        server=leaf("server", (ca, ca_key), server=True),
        client_ca=client_ca_path,
        client=leaf("client", (client_ca, client_ca_key)),
        stranger=leaf("stranger", (other_ca, other_ca_key)),
    )


@dataclass
class TlsApi:
    url: str
    port: int
    key: str
    process: subprocess.Popen[bytes]


def _env(database_url: str, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBATCH_")}
    return env | {
        "VOICEBATCH_DATABASE_URL": database_url,
        "VOICEBATCH_ENGINE": "test-tone",
        "VOICEBATCH_DATA_DIR": str(folder / "data"),
        "VOICEBATCH_BROKER_URL": private_redis_url(14),
    }


def _client_context(pki: Pki, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _start(
    pg_migrated_url: str, tmp_path: Path, pki: Pki, *options: str, client: Issued | None = None
) -> Iterator[TlsApi]:
    engine = create_db_engine(pg_migrated_url)
    with transaction(session_factory(engine)) as session:
        key = create_key(session, name="tls")[1]
    engine.dispose()
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [VOICEBATCH, "api", "--port", str(port), *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(pg_migrated_url, tmp_path),
            cwd=tmp_path,
        )
    api = TlsApi(f"https://127.0.0.1:{port}", port, key, process)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                verify = _client_context(pki, client)
                if httpx.get(f"{api.url}/healthz", verify=verify, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the TLS API did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield api
    finally:
        stop_processes([process])


@pytest.fixture
def tls_api(pg_migrated_url: str, tmp_path: Path, pki: Pki) -> Iterator[TlsApi]:
    tls = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    yield from _start(pg_migrated_url, tmp_path, pki, *tls)


@pytest.fixture
def mtls_api(pg_migrated_url: str, tmp_path: Path, pki: Pki) -> Iterator[TlsApi]:
    tls = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    yield from _start(
        pg_migrated_url,
        tmp_path,
        pki,
        *tls,
        "--tls-client-ca",
        str(pki.client_ca),
        client=pki.client,
    )


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = tls.recv(64)  # a refused client certificate shows here, in TLS 1.3
        if not answer:
            raise ConnectionError("the server closed the connection")
        assert answer.startswith(b"HTTP/1.1 200"), answer
        return str(tls.version())


def test_https_with_tls_12_or_newer(tls_api: TlsApi, pki: Pki) -> None:
    headers = {"Authorization": f"Bearer {tls_api.key}"}
    listed = httpx.get(f"{tls_api.url}/v1/jobs", headers=headers, verify=_client_context(pki))
    assert listed.status_code == 200, listed.text
    assert _handshake(tls_api.port, _client_context(pki)) in ("TLSv1.2", "TLSv1.3")
    pinned = _client_context(pki)
    pinned.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake(tls_api.port, pinned) == "TLSv1.2"
    old = _client_context(pki)
    with warnings.catch_warnings():  # deprecated versions: the point of the test
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(tls_api.port, old)
    # Plain HTTP on the TLS port gets no answer from the API.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_api.port}/healthz", timeout=5).raise_for_status()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(mtls_api: TlsApi, pki: Pki) -> None:
    assert _handshake(mtls_api.port, _client_context(pki, pki.client)).startswith("TLSv1.")
    for client in (None, pki.stranger):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(mtls_api.port, _client_context(pki, client))
    headers = {"Authorization": f"Bearer {mtls_api.key}"}
    verify = _client_context(pki, pki.client)
    assert httpx.get(f"{mtls_api.url}/v1/jobs", headers=headers, verify=verify).is_success


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--tls-cert", "{server.cert}"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "{client_ca}"], "--tls-client-ca needs --tls-cert"),
        (["--tls-cert", "/no/cert.pem", "--tls-key", "{server.key}"], "/no/cert.pem: no such"),
        (["--tls-cert", "{client.cert}", "--tls-key", "{server.key}"], "matching private key"),
        (
            ["--tls-cert", "{server.cert}", "--tls-key", "{server.key}", "--tls-client-ca", "/x"],
            "--tls-client-ca /x: no such file",
        ),
    ],
)
def test_bad_tls_options_stop_with_one_line(
    pg_migrated_url: str, tmp_path: Path, pki: Pki, options: list[str], named: str
) -> None:
    filled = [
        o.format(server=pki.server, client=pki.client, client_ca=pki.client_ca) for o in options
    ]
    done = subprocess.run(
        [VOICEBATCH, "api", "--port", str(free_port()), *filled],
        capture_output=True,
        env=_env(pg_migrated_url, tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode != 0
    error = done.stderr.decode().strip()
    assert named in error and len(error.splitlines()) == 1, error
