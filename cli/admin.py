"""Admin commands: db upgrade, keys, and the server processes: api, worker, reconcile, flower.

api/ and workers/ are imported inside the commands that run them: the server extra
(fastapi, celery, uvicorn, flower) is optional, and `voicebatch render` must work without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from cli.context import cli_state
from cli.options import BatchSizeOption, DataDirOption, EngineOption
from cli.output import console, err_console, reported_errors
from pipeline.config import Settings, load_settings
from pipeline.errors import InputError
from pipeline.state.db import create_db_engine, open_database, upgrade
from pipeline.state.db import transaction as db_transaction
from pipeline.state.keys import (
    DEFAULT_SCOPES,
    SCOPES,
    audit,
    audit_to_stderr,
    create_key,
    list_keys,
    revoke_key,
)
from pipeline.webhooks.callbacks import check_callback_url


def _factory(settings: Settings) -> sessionmaker[Session]:
    return open_database(settings.resolved_database_url, migrate_sqlite=True)


def db_upgrade(ctx: typer.Context, data_dir: DataDirOption = None) -> None:
    """Create or migrate the job database (VOICEBATCH_DATABASE_URL) to the newest schema."""
    with reported_errors(cli_state(ctx).debug):
        settings = load_settings(data_dir=data_dir)
        revision = upgrade(create_db_engine(settings.resolved_database_url))
    console.print(f"database at revision {revision}")


def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who the key is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help=f"What the key may do: {', '.join(SCOPES)} (admin: everything); repeat "
            f"or comma-separate. Default: {' '.join(DEFAULT_SCOPES)}.",
        ),
    ] = None,
    callback_url: Annotated[
        str | None,
        typer.Option(
            "--callback-url",
            help="Signed webhooks of this key's jobs go here, unless a job names its own "
            "callback_url (needs VOICEBATCH_WEBHOOK_SECRET).",
        ),
    ] = None,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    scopes = [s for part in scope or [] for s in part.split(",")] or list(DEFAULT_SCOPES)
    with reported_errors(cli_state(ctx).debug):
        settings = load_settings()
        check_callback_url(callback_url, settings, field="--callback-url")
        with db_transaction(_factory(settings)) as session:
            row, key = create_key(session, name=name, scopes=scopes, callback_url=callback_url)
            key_id, prefix, granted, named = row.id, row.prefix, row.scopes, row.name
    audit_to_stderr()
    audit("key_created", key=key_id, prefix=prefix, name=named, scopes=granted.split())
    err_console.print(f"key {key_id} for {name}, scopes {granted} (shown once; keep it safe):")
    console.print(key)


def keys_list(ctx: typer.Context) -> None:
    """List API keys (never the keys themselves)."""
    with (
        reported_errors(cli_state(ctx).debug),
        db_transaction(_factory(load_settings())) as session,
    ):
        table = Table("id", "name", "prefix", "scopes", "created", "revoked")
        for row in list_keys(session):
            table.add_row(
                str(row.id),
                row.name,
                row.prefix + "...",
                row.scopes,
                row.created_at.isoformat()[:19],
                row.revoked_at.isoformat()[:19] if row.revoked_at else "",
            )
    console.print(table)


def keys_revoke(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's id, prefix or name.")],
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    with (
        reported_errors(cli_state(ctx).debug),
        db_transaction(_factory(load_settings())) as session,
    ):
        row = revoke_key(session, ref=key)
        name, key_id, prefix = row.name, row.id, row.prefix
    audit_to_stderr()
    audit("key_revoked", key=key_id, prefix=prefix, name=name)
    console.print(f"revoked key {key_id} ({name})")


def api(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            envvar="VOICEBATCH_API_TLS_CERT",
            show_envvar=True,
            help="Serve HTTPS (TLS 1.2+) with this PEM certificate (chain); needs --tls-key.",
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            envvar="VOICEBATCH_API_TLS_KEY",
            show_envvar=True,
            help="The PEM private key of --tls-cert.",
        ),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-client-ca",
            envvar="VOICEBATCH_API_TLS_CLIENT_CA",
            show_envvar=True,
            help="Require client certificates signed by these PEM CAs (mutual TLS).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            envvar="VOICEBATCH_API_METRICS_PORT",
            show_envvar=True,
            help="Serve Prometheus metrics on this port (all addresses), not on the API's.",
        ),
    ] = None,
) -> None:
    """Run the submit API (FastAPI; OpenAPI docs at /docs)."""
    debug = cli_state(ctx).debug
    with reported_errors(debug):
        from api.app import create_app  # lazy, as below: the server extra is optional
        from api.serve import TlsFiles, server
        from workers.app import create_celery
        from workers.dispatch import CeleryDispatcher

        if (tls_cert is None) != (tls_key is None):
            raise InputError("--tls-cert and --tls-key go together: give both, or neither")
        if tls_client_ca is not None and tls_cert is None:
            raise InputError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS)")
        tls = TlsFiles(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
        settings = load_settings(api_metrics_port=metrics_port)
        application = create_app(settings, CeleryDispatcher(create_celery(settings)))
        if settings.api_metrics_port:
            from api.metrics import serve as serve_metrics

            serve_metrics(settings.api_metrics_port)
        running = server(
            application,
            host=host,
            port=port,
            log_level="info" if debug else "warning",
            tls=tls,
        )
        audit_to_stderr()
        scheme = "https" if tls else "http"
        mtls = " with client certificates" if tls and tls.client_ca else ""
        err_console.print(f"voicebatch API on {scheme}://{host}:{port}{mtls} (docs at /docs)")
    running.run()


def worker(
    ctx: typer.Context,
    queues: Annotated[
        str,
        typer.Option(
            "--queues",
            "-Q",
            help="render (engine work), assemble (CPU) and/or webhooks (signed callbacks).",
        ),
    ] = "render,assemble",
    pool: Annotated[
        str | None,
        typer.Option(help="threads, prefork or solo (default: threads for render, else prefork)."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Tasks at once.")
    ] = None,
    engine: EngineOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            envvar="VOICEBATCH_WORKER_METRICS_PORT",
            show_envvar=True,
            help="Serve Prometheus metrics on this port.",
        ),
    ] = None,
    batch_size: BatchSizeOption = None,
    batch_wait_ms: Annotated[
        int | None,
        typer.Option(
            "--batch-wait-ms",
            envvar="VOICEBATCH_BATCH_WAIT_MS",
            show_envvar=True,
            help="Dynamic batcher: longest wait (ms) for a batch to fill.",
        ),
    ] = None,
    batch_token_budget: Annotated[
        int | None,
        typer.Option(
            "--batch-token-budget",
            envvar="VOICEBATCH_BATCH_TOKEN_BUDGET",
            show_envvar=True,
            help="Dynamic batcher: most expected tokens in one batch (0: no limit).",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            envvar="VOICEBATCH_PRECISION",
            show_envvar=True,
            help="maya1 weights: bf16, fp16, int8 or fp32 (auto: bf16 on GPU, fp32 on CPU).",
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker for the render, assemble and/or webhooks queue.

    The engine loads once per worker process, before the first task; with a dynamic
    batcher (maya1) the worker's task threads all feed one batcher."""
    with reported_errors(cli_state(ctx).debug):
        from workers.worker import run_worker  # lazy: needs the server extra (celery)

        settings = load_settings(
            engine=engine,
            worker_metrics_port=metrics_port,
            batch_size=batch_size,
            batch_wait_ms=batch_wait_ms,
            batch_token_budget=batch_token_budget,
            precision=precision,
        )
        names = [q.strip() for q in queues.split(",") if q.strip()]
        chosen = pool or ("threads" if "render" in names else "prefork")
        run_worker(
            settings,
            queues=names,
            pool=chosen,
            concurrency=concurrency,
            loglevel=loglevel,
        )


def reconcile(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between rounds.")] = 30.0,
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds before idle work counts as lost.")
    ] = 120.0,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
) -> None:
    """Publish again the work the database says is due and the broker lost."""
    with reported_errors(cli_state(ctx).debug):
        from workers.reconciler import run_reconciler  # lazy: needs the server extra (celery)

        due = run_reconciler(load_settings(), interval=interval, grace=grace, once=once)
    if due is not None:
        console.print(
            f"{due.chunks} chunks republished, {len(due.assemble)} items to assemble, "
            f"{len(due.finalize)} jobs to finalize, {due.failed_chunks} chunks failed, "
            f"{due.replayed_messages} dead letters replayed"
        )
    elif once:
        console.print("another reconciler is acting (it holds the lock); this round did nothing")


def flower(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Run Flower (the Celery dashboard) behind basic auth."""
    with reported_errors(cli_state(ctx).debug):
        from workers.app import create_celery  # lazy: needs the server extra (celery)

        settings = load_settings()
        if settings.flower_password is None:
            raise InputError(
                "Flower needs a password: set VOICEBATCH_FLOWER_PASSWORD "
                "(and VOICEBATCH_FLOWER_USER, default admin)"
            )
        if ":" in settings.flower_user:
            raise InputError("VOICEBATCH_FLOWER_USER must not contain ':'")
        app_ = create_celery(settings)
        # From the environment, not argv: a password on the command line shows in `ps`.
        os.environ["FLOWER_BASIC_AUTH"] = (
            f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
        )
        err_console.print(f"Flower on http://{address}:{port} (user {settings.flower_user})")
    app_.start(["flower", f"--port={port}", f"--address={address}"])
