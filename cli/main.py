"""Entry point of the ``enastool`` command.

Commands live in their own modules and are imported only when run (or when ``--help`` lists
them), so ``enastool validate`` and ``enastool render`` start without importing torch. Each
entry below is ``name: (module, function name, one-line help)``; the help is listed from here,
so ``enastool --help`` imports nothing.
"""

from __future__ import annotations

import importlib

import click

from enastool import __version__

from .console import EnasGroup

COMMANDS: dict[str, tuple[str, str, str]] = {
    "search": ("search_cmds", "search", "Search architectures with shared weights (enas, random, oneshot)."),
    "derive": ("search_cmds", "derive", "Sample and score architectures from a search run; print the best."),
    "train-final": ("train_cmds", "train_final", "Train one architecture from scratch."),
    "evaluate": ("train_cmds", "evaluate", "Evaluate a final run, or score architectures with a search run."),
    "export": ("run_cmds", "export", "Write a final run's network as torch.export (.pt2), ONNX or TorchScript."),
    "runs": ("run_cmds", "runs", "List run directories: kind, space, status, epochs, best figure."),
    "plot": ("run_cmds", "plot", "Draw a run's training curves (png, svg, pdf)."),
    "render": ("encoding_cmds", "render", "Draw architectures with Graphviz (png, svg, pdf, dot)."),
    "validate": ("encoding_cmds", "validate", "Check architecture records; exit 2 on any error."),
    "convert": ("encoding_cmds", "convert", "Convert architectures between text, JSON, DARTS, NAO and DOT."),
    "info": ("encoding_cmds", "info", "Summarise architectures: ops, skips, loose ends, params, FLOPs."),
    "sample": ("encoding_cmds", "sample", "Print uniformly random valid architectures."),
    "data": ("data_cmds", "data", "Manage data sets (download CIFAR-10 or PTB)."),
}


class LazyGroup(EnasGroup):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help) for name, (_, _, help) in COMMANDS.items()])


PROG = "enastool"  # also names the completion variable, _ENASTOOL_COMPLETE


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=(
    "Exit status: 0 success; 2 bad input or usage (one line per error, no traceback); 1 an "
    "unexpected error (one line naming the file with its traceback; ENASTOOL_TRACEBACK=1 shows it); "
    "130 or 143 interrupted by Ctrl-C or SIGTERM (runs keep their last checkpoint and say how to "
    "resume). Shell completion: eval \"$(_ENASTOOL_COMPLETE=bash_source enastool)\" (zsh_source, "
    "fish_source for zsh and fish)."))
@click.version_option(__version__, prog_name=PROG)
def app() -> None:
    """Efficient neural architecture search: ENAS, random search with weight sharing, one-shot.

    Architectures travel between commands as text records on stdout/stdin; progress, messages
    and derive's ranking go to stderr, so commands pipe. Each command's --help has examples.

    \b
    Examples:
      enastool search --space micro --out runs/a       # smoke preset on the embedded digits
      enastool derive runs/a | enastool render - -o best.png
      python -m enastool validate best.arch            # the same tool, without the script
    """


def main() -> None:
    # One program name however started (`enastool`, `python -m enastool`): the usage lines and
    # the completion variable are the same.
    app(prog_name=PROG)


if __name__ == "__main__":
    main()
