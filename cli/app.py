"""`voicebatch`: the root Typer app and its command groups; the commands live in their modules."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from cli import admin, engine, jobs, quality, remote, render, storage
from cli.context import CliState
from cli.output import err_console

app = typer.Typer(
    name="voicebatch",
    help="Render speech in bulk: books and catalogues into finished audio.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
keys_app = typer.Typer(help="Submit-API keys.", no_args_is_help=True)
storage_app = typer.Typer(help="Object storage administration.", no_args_is_help=True)
lifecycle_app = typer.Typer(
    help="Bucket lifecycle rules: expire chunks, archive finished audio, abort stale uploads.",
    no_args_is_help=True,
)
engine_app = typer.Typer(help="Speech engine tools: SNAC decoder export.", no_args_is_help=True)


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    ctx.obj = CliState(debug=debug)
    # Warnings go through the same console as the progress bar, so they do not tear it.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
    )


# `voicebatch --help` lists the commands in this order, then the groups.
for command in (
    remote.submit,
    remote.watch,
    remote.download,
    remote.restore,
    remote.cancel,
    admin.api,
    admin.worker,
    admin.reconcile,
    admin.flower,
    quality.check,
    render.render,
    jobs.jobs,
    jobs.status,
    engine.engines,
):
    app.command()(command)

db_app.command("upgrade")(admin.db_upgrade)
keys_app.command("create")(admin.keys_create)
keys_app.command("list")(admin.keys_list)
keys_app.command("revoke")(admin.keys_revoke)
lifecycle_app.command("apply")(storage.lifecycle_apply)
lifecycle_app.command("show")(storage.lifecycle_show)
storage_app.add_typer(lifecycle_app, name="lifecycle")
engine_app.command("export-snac")(engine.export_snac)

app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(storage_app, name="storage")
app.add_typer(engine_app, name="engine")


def main() -> None:
    """The `voicebatch` console script."""
    app()


if __name__ == "__main__":
    main()
