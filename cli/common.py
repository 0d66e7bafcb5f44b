"""Options and loaders shared by several commands."""

from __future__ import annotations

import sys

import click

from enastool.encoding import SPACES
from enastool.encoding.textio import read_source

from .console import fail_many

space_option = click.option(
    "--space",
    type=click.Choice(sorted(SPACES)),
    default=None,
    help="Search space of a bare encoding (inferred when only one space fits).",
)
source_argument = click.argument("source", metavar="SOURCE", default="-")


def load_records(source: str, space: str | None):
    """All records of SOURCE; prints every error (one line each) and exits 2 if any."""
    records, errors = read_source(source, space=space, stdin=sys.stdin)
    if errors:
        fail_many([str(e) for e in errors])
    return records


def load_single(source: str, space: str | None):
    """Exactly one architecture from SOURCE."""
    records = load_records(source, space)
    if len(records) != 1:
        name = "stdin" if source == "-" else source
        fail_many([f"{name}: expected exactly one architecture record, found {len(records)}"])
    return records[0].arch
