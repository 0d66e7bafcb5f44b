"""``enastool data``: fetch data sets into a data directory."""

from __future__ import annotations

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn

from .console import EnasGroup, err_console


@click.group(cls=EnasGroup)
def data() -> None:
    """Manage data sets. digits is bundled with scikit-learn and needs nothing."""


@data.command("download")
@click.argument("dataset", type=click.Choice(["cifar10"]))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder to fill (default: $ENASTOOL_DATA_DIR or ~/.cache/enastool/data).",
)
@click.option("--url", default=None, help="Mirror of the archive (http(s), file:// or a path).")
@click.option("--md5", default=None, help="Expected MD5 of the archive (default: the official one).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def download(dataset: str, data_dir: str | None, url: str | None, md5: str | None, quiet: bool) -> None:
    """Download DATASET, verify its checksum and unpack it (resumable, atomic).

    Prints the folder holding the batches on stdout.
    """
    from enastool.data import CIFAR10_MD5, CIFAR10_URL, default_data_dir, download_cifar10

    folder = data_dir if data_dir is not None else default_data_dir()
    show = not quiet and err_console.is_terminal
    with Progress(
        "[bold]cifar10", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=err_console, disable=not show,
    ) as bar:
        task = bar.add_task("download", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        target = download_cifar10(folder, progress=progress, url=url or CIFAR10_URL, md5=md5 or CIFAR10_MD5)
    click.echo(str(target))
