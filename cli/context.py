"""What every command shares, kept on the Typer context (`ctx.obj`), not in a module global."""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass(frozen=True)
class CliState:
    """The root options, set once per invocation by the root callback."""

    debug: bool = False  # tracebacks on errors (--debug)


def cli_state(ctx: typer.Context) -> CliState:
    """The state the root callback put on the context; the defaults when there is none."""
    state = ctx.find_object(CliState)
    return state if state is not None else CliState()
