"""`voicebatch`: the root Typer app and its command groups; the commands live in their modules.

Commands are imported when they run, not when `voicebatch` starts (`LazyCommands`): a
render does not pay for the server, the API client or the database tools it never uses.
`voicebatch --help`, or an unknown command's suggestions, import them all.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from typer.core import TyperGroup
from typer.models import CommandInfo

from cli.context import CliState
from cli.output import err_console


def _command(module: str, function: str) -> Callable[[], Any]:
    """A command from `module`'s `function`, built when first asked for."""

    def build() -> Any:
        callback = getattr(importlib.import_module(module), function)
        return typer.main.get_command_from_info(
            CommandInfo(callback=callback),
            pretty_exceptions_short=True,
            rich_markup_mode=typer.core.DEFAULT_MARKUP_MODE,
        )

    return build


def _typer(
    help_text: str, commands: dict[str, tuple[str, str]], **groups: typer.Typer
) -> typer.Typer:
    """A command group whose commands are `name: (module, function)`."""
    group = typer.Typer(help=help_text, no_args_is_help=True)
    for name, (module, function) in commands.items():
        group.command(name)(getattr(importlib.import_module(module), function))
    for name, sub in groups.items():
        group.add_typer(sub, name=name)
    return group


def _group(name: str, make: Callable[[], typer.Typer]) -> Callable[[], Any]:
    """The group `make` builds, built when first asked for."""

    def build() -> Any:
        command = typer.main.get_group(make())
        command.name = name
        return command

    return build


# `voicebatch --help` lists the commands in this order, then the groups.
COMMANDS: dict[str, Callable[[], Any]] = {
    "submit": _command("cli.remote", "submit"),
    "watch": _command("cli.remote", "watch"),
    "download": _command("cli.remote", "download"),
    "restore": _command("cli.remote", "restore"),
    "cancel": _command("cli.remote", "cancel"),
    "api": _command("cli.admin", "api"),
    "worker": _command("cli.admin", "worker"),
    "reconcile": _command("cli.admin", "reconcile"),
    "exporter": _command("cli.exporter", "exporter"),
    "flower": _command("cli.admin", "flower"),
    "check": _command("cli.quality", "check"),
    "qa": _command("cli.qa", "qa"),
    "inspect": _command("cli.inspect", "inspect"),
    "render": _command("cli.render", "render"),
    "jobs": _command("cli.jobs", "jobs"),
    "status": _command("cli.jobs", "status"),
    "engines": _command("cli.engine", "engines"),
    "db": _group(
        "db", lambda: _typer("Database administration.", {"upgrade": ("cli.admin", "db_upgrade")})
    ),
    "keys": _group(
        "keys",
        lambda: _typer(
            "Submit-API keys.",
            {
                "create": ("cli.admin", "keys_create"),
                "list": ("cli.admin", "keys_list"),
                "revoke": ("cli.admin", "keys_revoke"),
            },
        ),
    ),
    "storage": _group(
        "storage",
        lambda: _typer(
            "Object storage administration.",
            {},
            lifecycle=_typer(
                "Bucket lifecycle rules: expire chunks, archive finished audio, abort stale "
                "uploads.",
                {
                    "apply": ("cli.storage", "lifecycle_apply"),
                    "show": ("cli.storage", "lifecycle_show"),
                },
            ),
        ),
    ),
    "engine": _group(
        "engine",
        lambda: _typer(
            "Speech engine tools: SNAC decoder export.",
            {"export-snac": ("cli.engine", "export_snac")},
        ),
    ),
}


class LazyCommands(TyperGroup):
    """The root group: each command is built (its module imported) on first use."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            if cmd_name in COMMANDS:
                self.commands[cmd_name] = COMMANDS[cmd_name]()
            else:  # unknown: load them all, so the suggestions are complete
                self.list_commands(ctx)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        for name in COMMANDS:
            self.get_command(ctx, name)
        return list(COMMANDS)


app = typer.Typer(
    name="voicebatch",
    cls=LazyCommands,
    help="Render speech in bulk: books and catalogues into finished audio.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


def main() -> None:
    """The `voicebatch` console script."""
    app()


if __name__ == "__main__":
    main()
