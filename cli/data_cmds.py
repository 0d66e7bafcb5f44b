"""``enastool data``: fetch data sets into a data directory."""

from __future__ import annotations

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn

from .console import EXIT_HELP, EnasGroup, err_console

# What `data download` can fetch; the library's downloaders are imported only when one runs.
DOWNLOADABLE = ("cifar10", "ptb")


@click.group(cls=EnasGroup)
def data() -> None:
    """Manage data sets. digits (images) and pydoc (text) are embedded and need nothing.

    \b
    Examples:
      enastool data download cifar10 --data-dir data
      enastool data download ptb --data-dir data
    """


@data.command("download", epilog=EXIT_HELP)
@click.argument("dataset", type=click.Choice(DOWNLOADABLE))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder to fill (default: $ENASTOOL_DATA_DIR or ~/.cache/enastool/data).",
)
@click.option(
    "--url", default=None,
    help="Mirror (http(s), file:// or a path): of the archive for cifar10, of the folder holding "
         "ptb.train.txt, ptb.valid.txt and ptb.test.txt for ptb.",
)
@click.option("--md5", default=None, help="Expected MD5 of the cifar10 archive (default: the official one).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def download(dataset: str, data_dir: str | None, url: str | None, md5: str | None, quiet: bool) -> None:
    """Download DATASET, verify its checksums and put it in place (resumable, atomic).

    Prints the folder holding the data set on stdout: the --data-dir for it.

    \b
    Examples:
      enastool data download cifar10 --data-dir data     # prints data/cifar-10-batches-py
      enastool search --space micro --data-dir "$(enastool data download cifar10)" --out runs/m
    """
    from enastool.data import default_data_dir, download_cifar10, download_ptb
    from enastool.errors import EnasError

    if dataset == "ptb" and md5 is not None:
        raise EnasError("--md5 is for the cifar10 archive; the three ptb files are checked against their own MD5s")
    fetch = {"cifar10": download_cifar10, "ptb": download_ptb}[dataset]
    folder = data_dir if data_dir is not None else default_data_dir()
    options = {name: value for name, value in (("url", url), ("md5", md5)) if value}
    show = not quiet and err_console.is_terminal
    with Progress(
        f"[bold]{dataset}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=err_console, disable=not show,
    ) as bar:
        task = bar.add_task("download", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        target = fetch(folder, progress=progress, **options)
    click.echo(str(target))
