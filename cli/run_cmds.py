"""``enastool runs``, ``enastool plot`` and ``enastool export``: what a researcher does with run
directories once they exist.

- runs: a table of the run directories under DIR (or JSON) on stdout, the data of the command;
  it reads run.json, config.json, status.json and metrics.jsonl only (no torch, no checkpoint).
- plot: the curves of one run into a picture (matplotlib, the ``enastool[plot]`` extra).
- export: the trained network of a final run into .pt2, .onnx or .ts (``enastool.export``).

stdout carries the data (runs' table or JSON); plot and export write files and say so on
stderr. Nothing here imports torch or matplotlib at module level, so ``--help`` is instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from enastool.runs import CHECKPOINT_CHOICES

from .console import EXIT_HELP

COLUMN_GAP = "  "


@click.command("runs", epilog=EXIT_HELP)
@click.argument("root", metavar="[DIR]", default=".", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one aligned line per run; json: a list of objects.")
def runs(root: str, fmt: str) -> None:
    """List the run directories under DIR (default: the current folder), sorted by path.

    Each run: kind, space, strategy, status (running, interrupted, finished, failed, or broken
    when the directory does not open), epochs done of the configured count, the best figure of
    its epoch records (final runs: test accuracy; searches: validation accuracy; rnn:
    validation perplexity) and when it last wrote a record. JSON keys: run, kind, space,
    strategy, dataset, status, epoch, epochs, best {name, value}, updated, error.

    \b
    Examples:
      enastool runs runs/
      enastool runs runs/ --format json | jq '.[] | select(.status == "failed")'
    """
    from enastool.runlist import iter_table, list_runs

    rows = list_runs(root)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no run directories under {root}", err=True)
        return
    table = list(iter_table(rows, Path(root)))
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    for cells in table:
        click.echo(COLUMN_GAP.join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())


@click.command("plot", epilog=EXIT_HELP)
@click.argument("run_path", metavar="RUN", type=click.Path())
@click.option("-o", "--output", "out", required=True, metavar="OUT",
              help="Picture to write; its suffix picks the format: .png, .svg or .pdf.")
def plot(run_path: str, out: str) -> None:
    """Draw the training curves of RUN (search or final) into OUT.

    Panels, each when the run has it: loss and accuracy (training beside validation or test),
    perplexity (rnn), learning rate, and for an enas search the controller's reward with its
    baseline and its entropy. Needs matplotlib: pip install 'enastool[plot]'.

    \b
    Examples:
      enastool plot runs/demo/final -o curves.png
      enastool plot runs/demo/search -o search.svg
    """
    from enastool.curves import plot_format, plot_run

    plot_format(out)  # a bad suffix fails before the run is read
    result = plot_run(run_path, out)
    click.echo(f"wrote {result['path']} ({len(result['panels'])} panels: {', '.join(result['panels'])})", err=True)


@click.command("export", epilog=EXIT_HELP)
@click.argument("run_path", metavar="RUN", type=click.Path())
@click.option("-o", "--output", "out", required=True, metavar="OUT",
              help="File to write; its suffix picks the format: .pt2 (torch.export), .onnx, .ts (TorchScript).")
@click.option("--checkpoint", type=click.Choice(list(CHECKPOINT_CHOICES)), default=None,
              help="last (default: the network at the end of training) or best (the epoch with the best test accuracy).")
def export(run_path: str, out: str, checkpoint: str | None) -> None:
    """Write the trained network of final run RUN into OUT, ready to run outside enastool.

    The program takes images as the data set holds them, uint8 N x C x H x W (pixels 0..255,
    any batch size), with the training set's normalisation folded in, and returns logits
    N x classes, in eval mode (no dropout, no drop path). The file's metadata (enastool.json)
    records the architecture, the checkpoint, the input and its mean and std. ONNX needs pip
    install 'enastool[onnx]'.

    \b
    Examples:
      enastool export runs/final -o model.pt2      # torch.export.load(...).module()
      enastool export runs/final -o model.onnx     # onnxruntime.InferenceSession(...)
      enastool export runs/final -o model.ts       # torch.jit.load(...)
    """
    from enastool.export import FORMATS, check_exporter, export_format, export_run

    suffix = export_format(out)  # bad suffix or missing extra: one line before anything loads
    check_exporter(suffix)
    metadata = export_run(run_path, out, checkpoint=checkpoint)
    shape = " x ".join(map(str, metadata["input"]["shape"]))
    classes = metadata["output"]["shape"][-1]
    click.echo(f"wrote {out} ({FORMATS[suffix]}): {metadata['input']['name']} {metadata['input']['dtype']} "
               f"{shape} (pixels 0..255, normalisation folded in) -> logits N x {classes}; "
               f"{metadata['checkpoint']}, epoch {metadata['epoch']}", err=True)
