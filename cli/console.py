"""Console helpers: stderr for people, stdout for data, one-line errors with exit status 2.

Three kinds of failure become one line ``enastool: error: ...`` and exit status 2, never a
traceback: an EnasError (the library's user errors), a usage error (an unknown option, a value
click refuses; the line says which --help to read), and a memory allocation that fails (the
size asked for, and what to lower).
"""

from __future__ import annotations

import re
import sys

import click
from rich.console import Console

from enastool.atomic import human_bytes
from enastool.errors import EnasError

EXIT_USAGE = 2
# How torch reports a failed allocation: "...you tried to allocate 120000000000 bytes" (CPU),
# "CUDA out of memory. Tried to allocate 20.00 GiB" (CUDA; MPS says much the same).
_ALLOCATION = re.compile(r"[Tt]ried to allocate (?:(\d+) bytes|([0-9.]+ ?[KMGT]?i?B))")
_OUT_OF_MEMORY = ("can't allocate memory", "out of memory")

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


def allocation_message(error: BaseException) -> str | None:
    """The one-line message for a memory allocation that failed, or None for any other error."""
    if isinstance(error, MemoryError):
        return "out of memory (Python could not allocate what it needed); lower the sizes " \
               "(--channels, --layers, --batch-size) or free memory"
    text = str(error)
    if not isinstance(error, RuntimeError) or not any(words in text for words in _OUT_OF_MEMORY):
        return None
    found = _ALLOCATION.search(text)
    size = (human_bytes(int(found.group(1))) if found.group(1) else found.group(2)) if found else "memory"
    device = "the GPU" if "CUDA" in text or "MPS" in text else "the host"
    return (f"out of memory: {device} could not allocate {size}; lower the sizes (--channels, "
            "--layers, --batch-size) or use a device with more memory")


def usage_message(error: click.UsageError) -> str:
    """click's complaint in one line, with the --help to read."""
    names = [c.info_name for c in _lineage(error.ctx)][1:]  # the root is enastool, however started
    return f"{error.format_message().rstrip('.')}; see '{' '.join(['enastool', *names])} --help'"


def _lineage(ctx: click.Context | None) -> list[click.Context]:
    chain = []
    while ctx is not None:
        chain.insert(0, ctx)
        ctx = ctx.parent
    return chain


class EnasGroup(click.Group):
    """A click group that turns user errors into one line and exit 2, never a traceback."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:  # the group's own options
            fail(usage_message(e))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EnasError as e:
            fail(str(e))
        except click.UsageError as e:
            fail(usage_message(e))
        except (MemoryError, RuntimeError) as e:
            message = allocation_message(e)
            if message is None:
                raise  # a bug: shown in full
            fail(message)
        except KeyboardInterrupt:
            # A second Ctrl-C during a run, or one outside a run: no traceback for it.
            click.echo("enastool: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error of ours.
            sys.stderr.close()
            sys.exit(0)
