"""Entry point of the ``enastool`` command."""

import click

from enastool import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="enastool")
def app() -> None:
    """Efficient neural architecture search (ENAS, random-with-sharing, one-shot)."""


def main() -> None:
    app()
