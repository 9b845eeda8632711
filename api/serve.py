"""Running the API under uvicorn, over plain HTTP or TLS (`voicebatch api --tls-cert
--tls-key`, with `--tls-client-ca` for client certificates: mTLS).

TLS 1.2 is the oldest version offered. The certificate files are loaded here, before
the server starts, so a wrong path or a key that does not match its certificate stops
`voicebatch api` with one line naming the file instead of a traceback from uvicorn."""

from __future__ import annotations

import gc
import ssl
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from pipeline.errors import InputError


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # given: every client must present a certificate it signed


def tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2 or newer, client certificates required when a
    client CA is given. InputError names the file at fault."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for option, path in (("--tls-cert", tls.cert), ("--tls-key", tls.key)):
        if not path.is_file():
            raise InputError(f"{option} {path}: no such file")
    try:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    except (ssl.SSLError, ValueError) as exc:
        raise InputError(
            f"--tls-cert {tls.cert} / --tls-key {tls.key}: not a PEM certificate and its "
            f"matching private key ({exc.__class__.__name__})"
        ) from exc
    if tls.client_ca is not None:
        if not tls.client_ca.is_file():
            raise InputError(f"--tls-client-ca {tls.client_ca}: no such file")
        try:
            context.load_verify_locations(cafile=str(tls.client_ca))
        except ssl.SSLError as exc:
            raise InputError(f"--tls-client-ca {tls.client_ca}: not PEM CA certificates") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def freeze_startup_heap() -> None:
    """Put what starting the API allocated (modules, the app, its schemas: ~150,000
    objects) out of the cyclic collector's reach. A full collection of that heap takes
    ~50 ms on a 2-core machine and, under a burst of requests, paused /healthz past its
    100 ms bound; frozen, collections scan only what requests allocate (gc.freeze)."""
    gc.collect()
    gc.freeze()


def server(
    application: FastAPI, *, host: str, port: int, log_level: str, tls: TlsFiles | None
) -> uvicorn.Server:
    """A uvicorn server for `application`, its TLS context (if any) already checked."""
    freeze_startup_heap()
    config = uvicorn.Config(application, host=host, port=port, log_level=log_level)
    if tls is not None:
        context = tls_context(tls)
        config.load()  # builds uvicorn's state; its TLS context is replaced by ours
        config.ssl = context
    return uvicorn.Server(config)
