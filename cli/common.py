"""Options and loaders shared by several commands."""

from __future__ import annotations

import sys

import click

from enastool.encoding import SPACES
from enastool.encoding.spaces import IMAGES, TEXT, data_kind
from enastool.encoding.textio import read_source
from enastool.errors import EnasError

from .console import fail_many

space_option = click.option(
    "--space",
    type=click.Choice(sorted(SPACES)),
    default=None,
    help="Search space of a bare encoding (inferred when only one space fits).",
)
source_argument = click.argument("source", metavar="[SOURCE]", default="-")


STDIN = "-"
WAITING = "reading architectures from stdin (Ctrl-D to end)..."


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def say_if_waiting(source: str) -> None:
    """On a terminal, say that SOURCE - waits for typed input (else it looks like a hang)."""
    if source == STDIN and stdin_is_terminal():
        click.echo(WAITING, err=True)


# --------------------------------------------------------------------------- --set KEY=VALUE
def set_option(example: str):
    """The ``--set KEY=VALUE`` option of a run command (``example``: an assignment for its help)."""
    return click.option(
        "--set", "assignments", multiple=True, metavar="KEY=VALUE",
        help=f"Set any setting of config.toml, e.g. --set {example} (repeatable; typed and checked "
             "like the file's values; none unsets one that may be unset).",
    )


# How the note names the data set a data directory holds, by data kind.
FILES_DATASET_NAMES = {IMAGES: "CIFAR-10", TEXT: "PTB"}


def preset_note(title: str, preset: str, config) -> str:
    """The line saying which preset a command chose because none was given (``config``: the
    resolved configuration, whose space and data set it names)."""
    files = FILES_DATASET_NAMES[data_kind(config.space)]
    return (f"{title}: preset {preset}, the default on the embedded {config.dataset} data set (--data-dir DIR "
            f"for {files} with the paper preset, or --preset to choose)")


def parse_assignments(cls, assignments, given: dict) -> tuple[dict, dict]:
    """The values of ``--set KEY=VALUE`` (typed by config class ``cls``) and their origins for
    error messages; a key that an option also set (``given``: field -> value) is refused, since
    which one wins would not be obvious."""
    from enastool.config import parse_assignment

    ctx = click.get_current_context(silent=True)
    flags = {param.name: param.opts[0] for param in ctx.command.params if param.opts} if ctx else {}
    values, origins = {}, {}
    for text in assignments:
        key, value = parse_assignment(cls, text)
        if given.get(key) is not None:
            flag = flags.get(key, "--" + key.replace("_", "-"))
            raise EnasError(f"--set {text} and {flag} both set {key}; give one of them")
        values[key], origins[key] = value, f"--set {text}"
    return values, origins


def load_records(source: str, space: str | None):
    """All records of SOURCE; prints every error (one line each) and exits 2 if any."""
    records, errors = read_records(source, space)
    if errors:
        fail_many(errors)
    return records


def read_records(source: str, space: str | None):
    """The records of SOURCE and every error (one line each)."""
    say_if_waiting(source)
    records, errors = read_source(source, space=space, stdin=sys.stdin)
    return records, [str(e) for e in errors]


# --------------------------------------------------------------------------- input formats
# Text, JSON and DARTS inputs are recognised by textio without a flag. NAO token lines are
# bare integers like the authors' encodings, so they need ``--from nao`` (or a .nao file).
AUTO = "auto"
NAO = "nao"
NAO_SUFFIX = ".nao"
INPUT_FORMATS = (AUTO, NAO)

from_option = click.option(
    "--from",
    "from_format",
    type=click.Choice(INPUT_FORMATS),
    default=AUTO,
    show_default=True,
    help="Input format: auto (records, bare encodings, JSON, DARTS; NAO for a .nao file) or "
    "nao (NAO token lines, one micro architecture per line).",
)


def read_nao_source(source: str, space: str | None):
    """Records of a NAO file (one micro architecture per non-blank line) and every error."""
    from enastool.encoding.micro import MicroArch
    from enastool.encoding.nao import read_nao_records
    from enastool.encoding.textio import read_text, source_name
    from enastool.errors import EncodingError

    if space is not None and space != MicroArch.space:
        return [], [f"--from nao reads micro architectures; --space {space} does not apply"]
    say_if_waiting(source)
    try:
        text = read_text(source, sys.stdin)
    except EncodingError as e:
        return [], [str(e)]
    records, errors = read_nao_records(text, source_name(source))
    return records, [str(e) for e in errors]


def read_input(source: str, space: str | None, from_format: str = AUTO):
    """The records of SOURCE in ``from_format`` and every error (one line each).

    ``auto`` reads a file named ``*.nao`` as NAO token lines, anything else through textio.
    """
    if from_format == NAO or (from_format == AUTO and source.lower().endswith(NAO_SUFFIX)):
        return read_nao_source(source, space)
    return read_records(source, space)


def load_input(source: str, space: str | None, from_format: str = AUTO):
    """All records of SOURCE in ``from_format``; prints every error (one line each), exits 2."""
    records, errors = read_input(source, space, from_format)
    if errors:
        fail_many(errors)
    return records


def load_single(source: str, space: str | None, from_format: str = AUTO):
    """The one architecture of SOURCE; one error line and exit 2 for none or several."""
    records = load_input(source, space, from_format)
    if len(records) != 1:
        from enastool.encoding.textio import source_name

        fail_many([f"{source_name(source)}: expected exactly one architecture record, found {len(records)}"])
    return records[0].arch
