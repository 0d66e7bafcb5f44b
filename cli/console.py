"""Console helpers: stderr for people, stdout for data, one line per failure, exit statuses.

Exit statuses (every command; ``EXIT_HELP`` and ``RUN_EXIT_HELP`` say it in each --help):

- 0: done.
- 2: bad input or usage, one line ``enastool: error: ...`` and never a traceback: an EnasError
  (the library's user errors), a usage error (an unknown option, a value click refuses; the
  line says which --help to read), a memory allocation that fails (the size asked for, and
  what to lower).
- 1: the command failed on something unexpected (a bug, a broken installation): one line
  naming the error and the file holding its traceback: ``RUN/error.log`` when a run is under
  way (appended), else a new file in the temporary folder. ``ENASTOOL_TRACEBACK=1`` shows the
  traceback itself instead.
- 128 + the signal, 130 (Ctrl-C) or 143 (SIGTERM): interrupted. Runs save a checkpoint on the
  first signal and say how to resume; a second signal (or one that arrives where nothing
  catches it) stops at once, and the line still says how to resume.

Commands that work on a run directory tell this module about it (:func:`note_run`), so the
last two cases can name the run and the command that continues it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console

from enastool import __version__
from enastool.atomic import human_bytes
from enastool.errors import EnasError
from enastool.runs import LAST_CHECKPOINT, SecondSignal  # no torch import

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CODE_BASE = 128  # a shell reports death by signal N as 128 + N
EXIT_INTERRUPTED = EXIT_CODE_BASE + signal.SIGINT  # 130
TRACEBACK_ENV = "ENASTOOL_TRACEBACK"  # set (to anything but 0): unexpected errors show their traceback
ERROR_LOG = "error.log"  # in the run directory: tracebacks of unexpected errors, appended
MESSAGE_CHARS = 200  # an unexpected error's message is cut to this on its one line

EXIT_HELP = ("Exit status: 0 success; 2 bad input or usage (one line per error); 1 an unexpected "
             "error (one line naming the file with its traceback); 130 interrupted (Ctrl-C).")
RUN_EXIT_HELP = ("Exit status: 0 finished; 2 bad input or usage (one line, nothing started); 1 the "
                 "run failed on an unexpected error (one line; the traceback is in RUN/error.log); "
                 "130 or 143 interrupted by Ctrl-C or SIGTERM (the last checkpoint is kept; the "
                 "line says how to continue with --resume RUN).")
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


# ------------------------------------------------------------------ the run under way
@dataclass
class RunNote:
    """The run directory a command works on, and the command that continues it."""

    path: Path
    resume: str
    created: bool  # False: not made yet (a new run still loading): nothing to resume


_run: RunNote | None = None


def note_run(path, resume: str, created: bool = True) -> None:
    """Tell the error and interrupt handlers which run is under way (see the module doc)."""
    global _run
    _run = RunNote(Path(path), resume, created)


def forget_run() -> None:
    global _run
    _run = None


def stopped_message() -> str:
    """The line for a run stopped at once (a second Ctrl-C, an unexpected error): what is kept
    and how to continue; empty when no run is under way."""
    if _run is None:
        return ""
    if not _run.created:
        return f"; nothing was written to {_run.path}: run the command again"
    checkpoint = _run.path / LAST_CHECKPOINT
    kept = (f"its last checkpoint {checkpoint} is kept" if checkpoint.is_file()
            else "it has no checkpoint yet and starts over")
    return f"; {kept}; continue with: {_run.resume}"


def interrupted(error: KeyboardInterrupt) -> None:
    """A Ctrl-C (or SIGTERM) that reached the top: one line, the resume hint, 128 + signal."""
    again = isinstance(error, SecondSignal)  # the first one asked a run to save and stop
    code = error.exit_code if again else EXIT_INTERRUPTED
    what = "interrupted again: stopped at once without saving" if again else "interrupted"
    click.echo(f"enastool: {what}{stopped_message()}", err=True)
    sys.exit(code)


def crashed(error: BaseException) -> None:
    """An unexpected error: one line naming it and the file holding its traceback; exit 1."""
    log = write_traceback(error)
    where = f"; traceback in {log}" if log is not None else ""
    lines = str(error).strip().splitlines()
    text = lines[0][:MESSAGE_CHARS] if lines else ""
    click.echo(f"enastool: error: unexpected {type(error).__name__}{': ' + text if text else ''} "
               f"(a bug in enastool or its environment; please report it){where}{stopped_message()}",
               err=True)
    sys.exit(EXIT_FAILED)


def write_traceback(error: BaseException) -> Path | None:
    """Append the traceback to RUN/error.log (a run under way) or write a new temporary file;
    None if neither can be written (the traceback then goes to stderr)."""
    header = (f"--- {datetime.now().isoformat(timespec='seconds')} enastool {__version__}: "
              f"{' '.join(sys.argv)}\n")
    text = header + "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        if _run is not None and _run.created and _run.path.is_dir():
            path = _run.path / ERROR_LOG
            with path.open("a", encoding="utf-8") as handle:
                handle.write(text)
            return path
        handle, name = tempfile.mkstemp(prefix="enastool-error-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        return Path(name)
    except OSError:
        sys.stderr.write(text)
        return None


def show_tracebacks() -> bool:
    return os.environ.get(TRACEBACK_ENV, "0") not in ("", "0")


class EnasGroup(click.Group):
    """A click group that turns every failure into one line and its exit status (module doc)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:  # the group's own options
            fail(usage_message(e))

    def invoke(self, ctx: click.Context):
        forget_run()  # a run noted by an earlier command of this process is not this one's
        try:
            return super().invoke(ctx)
        except EnasError as e:
            fail(str(e))
        except click.UsageError as e:
            fail(usage_message(e))
        except KeyboardInterrupt as e:
            # A second Ctrl-C during a run, or one outside a run: no traceback for it.
            interrupted(e)
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error of ours.
            sys.stderr.close()
            sys.exit(0)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own ways out (--help, --version, ...)
        except Exception as e:
            message = allocation_message(e)
            if message is not None:
                fail(message)
            if show_tracebacks():
                raise
            crashed(e)
