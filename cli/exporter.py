"""`voicebatch exporter`: queue depth and age, jobs by state, chunk latency, job turnaround
and dependency health for Prometheus; one per deployment (workers.exporter)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import cli_state
from cli.output import err_console, reported_errors
from pipeline.config import load_settings


def exporter(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve metrics on.")] = 9102,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    interval: Annotated[
        float, typer.Option(min=1, max=3600, help="Seconds between reads of broker and database.")
    ] = 15.0,
) -> None:
    """Export the deployment's queues, jobs and dependencies to Prometheus (run one)."""
    with reported_errors(cli_state(ctx).debug):
        from workers.exporter import run_rounds, start_exporter  # lazy: the server extra

        exporter_ = start_exporter(load_settings(), port=port, address=address)
        err_console.print(
            f"voicebatch exporter on http://{address}:{port}/metrics, a round every {interval:g} s"
        )
        run_rounds(exporter_, interval=interval)
