"""Console helpers: stderr for people, stdout for data, one-line errors with exit status 2."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from enastool.errors import EnasError

EXIT_USAGE = 2

# Progress, tables and messages go to stderr; stdout carries architectures and JSON only.
err_console = Console(stderr=True, highlight=False)


def fail(message: str) -> None:
    """Print one error line and exit with status 2."""
    click.echo(f"enastool: error: {' '.join(str(message).split())}", err=True)
    sys.exit(EXIT_USAGE)


def fail_many(messages: list[str]) -> None:
    for message in messages:
        click.echo(f"enastool: error: {' '.join(str(message).split())}", err=True)
    sys.exit(EXIT_USAGE)


class EnasGroup(click.Group):
    """A click group that turns user errors into one line and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EnasError as e:
            fail(str(e))
        except KeyboardInterrupt:
            # A second Ctrl-C during a run, or one outside a run: no traceback for it.
            click.echo("enastool: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error of ours.
            sys.stderr.close()
            sys.exit(0)
